// Command plugin is the wasmstream frequency-capping example: it counts how
// often each user has seen each advertisement and, the moment a user reaches
// the cap for an ad, emits one record to the "capped" side output so the ad
// server stops showing that ad to that user.
//
// Events look like {"user_no":123,"da_id":45,"log_time":1735689600000}; the
// job keys them by user_no, so the event key is the user number's JSON text.
// Config "cap" sets the cap (default 3).
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o freqcap.wasm .
package main

import (
	"fmt"
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

var (
	// daID is the advertisement id, extracted by the host.
	daID = wasmstream.NewField("da_id")
	// views counts impressions per user (the event key) and ad.
	views = wasmstream.NewMapState("views", wasmstream.Int64, wasmstream.Int64)
	// capped receives one record per (user, ad) that reached the cap.
	capped = wasmstream.NewSideOutput("capped")
)

// FreqCap is the process function. key and value are reused output buffers.
type FreqCap struct {
	cap        int64
	key, value []byte
}

// Open reads the cap from the job config.
func (f *FreqCap) Open(ctx *wasmstream.OpenContext) error {
	n, err := ctx.ConfigInt("cap", 3)
	if err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("config cap=%d: want a positive number of views", n)
	}
	f.cap = n
	return nil
}

// ProcessElement counts one view: one host call, plus one when it emits.
func (f *FreqCap) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	da, ok := ev.Int(daID)
	if !ok {
		return fmt.Errorf("da_id is %s, want an integer", ev.Kind(daID))
	}
	if views.AddInt64(ctx, da, 1) != f.cap {
		return nil
	}
	user := ctx.Key()
	f.key = append(f.key[:0], user...)
	f.key = append(f.key, '.')
	f.key = strconv.AppendInt(f.key, da, 10)
	f.value = append(f.value[:0], `{"user_no":`...)
	f.value = append(f.value, user...)
	f.value = append(f.value, `,"da_id":`...)
	f.value = strconv.AppendInt(f.value, da, 10)
	f.value = append(f.value, `,"count":`...)
	f.value = strconv.AppendInt(f.value, f.cap, 10)
	f.value = append(f.value, '}')
	ctx.EmitTo(capped, f.key, f.value)
	return nil
}

func init() { wasmstream.Register("freqcap", &FreqCap{}) }

func main() {}
