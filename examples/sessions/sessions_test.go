package sessions

import (
	"fmt"
	"slices"
	"testing"

	"github.com/wasmstream/wasmstream/examples/internal/jobtest"
)

func TestJobYAML(t *testing.T) {
	c := jobtest.EventTime(t, JobYAML, "ts", DefaultMaxOutOfOrderness)
	if c.Plugin.Config["gap_ms"] != fmt.Sprint(DefaultGap) {
		t.Errorf("job %+v", c)
	}
	if w, err := c.CheckOutputs(nil); err != nil || len(w) > 0 {
		t.Errorf("outputs: %v %q", err, w)
	}
}

func TestExpect(t *testing.T) {
	ev := func(u int, at, amount int64) []byte {
		return fmt.Appendf(nil, `{"user_id":%d,"ts":%d,"amount":%d}`, u, at, amount)
	}
	const m = 60 * 1000
	events := [][]byte{ev(1, 0, 1), ev(1, 20*m, 2), ev(2, 21*m, 5), ev(1, 10*m, 3), ev(1, 50*m, 4), ev(1, 80*m, 8),
		ev(1, 5*m, 100), // late: at or below 80m-15m-1ms
		[]byte(`{"user_id":1,"ts":90}`)}
	got := Expect(events, Params{Gap: 30 * m, MaxOutOfOrderness: 15 * m})
	want := []Session{
		{"1", `{"user_id":1,"start":0,"end":1200000,"events":3,"amount":6}`},
		{"1", `{"user_id":1,"start":3000000,"end":3000000,"events":1,"amount":4}`}, // 50m is 30m after 20m: a new session
		{"1", `{"user_id":1,"start":4800000,"end":4800000,"events":1,"amount":8}`},
		{"2", `{"user_id":2,"start":1260000,"end":1260000,"events":1,"amount":5}`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Expect =\n%v\nwant\n%v", got, want)
	}
}
