package fatigue

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/examples/internal/jobtest"
)

func TestJobYAML(t *testing.T) {
	c := jobtest.EventTime(t, JobYAML, "ts", DefaultMaxOutOfOrderness)
	if c.Key.Field != "user_id" {
		t.Errorf("job %+v", c)
	}
	if w, err := c.CheckOutputs([]string{"suppressed"}); err != nil || len(w) > 0 {
		t.Errorf("outputs: %v %q", err, w)
	}
}

func TestExpect(t *testing.T) {
	ev := func(u, id int, at int64) []byte {
		return fmt.Appendf(nil, `{"user_id":%d,"notification_id":%d,"ts":%d}`, u, id, at)
	}
	const h = 3600 * 1000
	events := [][]byte{ev(1, 1, 0), ev(1, 3, 2*h), ev(1, 2, h), ev(1, 4, 24*h), ev(1, 4, 24*h), ev(2, 5, 23*h), []byte(`{"user_id":1}`)}
	var got []string
	for _, r := range Expect(events, Params{Limit: 2, MaxOutOfOrderness: 2 * h}) {
		got = append(got, r.Output+" "+r.Key+" "+r.Value)
	}
	want := []string{
		`main 1 {"user_id":1,"notification_id":1,"ts":0}`,
		`main 1 {"user_id":1,"notification_id":2,"ts":3600000}`,
		`suppressed 1 {"user_id":1,"notification_id":3,"ts":7200000,"reason":"limit of 2 notifications in 24h reached","next_allowed":86400000}`,
		`main 1 {"user_id":1,"notification_id":4,"ts":86400000}`,
		`main 2 {"user_id":2,"notification_id":5,"ts":82800000}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Expect:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Late: 0 is at or below 3h-1h-1ms.
	if n := len(Expect([][]byte{ev(1, 1, 3*h), ev(1, 2, 0)}, Params{MaxOutOfOrderness: h})); n != 1 {
		t.Errorf("late event decided: %d records", n)
	}
}

func TestGenerate(t *testing.T) {
	a := Generate(1000, GenOptions{Seed: 1, Disorder: 50_000})
	b := Generate(1000, GenOptions{Seed: 1})
	if slices.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) }) {
		t.Error("Disorder did not shuffle")
	}
	if !slices.EqualFunc(a, Generate(1000, GenOptions{Seed: 1, Disorder: 50_000}), func(x, y []byte) bool { return string(x) == string(y) }) {
		t.Error("not deterministic")
	}
}
