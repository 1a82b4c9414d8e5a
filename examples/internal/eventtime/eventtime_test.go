package eventtime

import (
	"fmt"
	"testing"
)

func TestWatermark(t *testing.T) {
	w := NewWatermark(10)
	for _, c := range []struct {
		t      int64
		onTime bool
	}{{100, true}, {90, true}, {89, false}, {120, true}, {109, false}, {110, true}} {
		if got := w.Next(c.t); got != c.onTime {
			t.Errorf("Next(%d) = %v, want %v", c.t, got, c.onTime)
		}
	}
}

func TestArrivalStaysWithinTheBound(t *testing.T) {
	times := make([]int64, 5000)
	for i := range times {
		times[i] = int64(i) * 3
	}
	order := Arrival(times, 100, 1)
	w := NewWatermark(100)
	moved := 0
	for i, j := range order {
		if !w.Next(times[j]) {
			t.Fatalf("event %d (time %d) is late", i, times[j])
		}
		if j != i {
			moved++
		}
	}
	if moved < 1000 {
		t.Errorf("only %d events moved", moved)
	}
}

func TestOnTime(t *testing.T) {
	type fields struct {
		TS *int64 `json:"ts"`
	}
	events := [][]byte{[]byte(`{"ts":100}`), []byte(`bad`), []byte(`{}`), []byte(`{"ts":89}`), []byte(`{"ts":120}`), []byte(`{"ts":109}`), []byte(`{"ts":110}`)}
	var got []int
	for i, v := range OnTime(events, 10, func(v *fields) *int64 { return v.TS }) {
		if *v.TS != map[int]int64{0: 100, 4: 120, 6: 110}[i] {
			t.Errorf("event %d has ts %d", i, *v.TS)
		}
		got = append(got, i)
	}
	if fmt.Sprint(got) != "[0 4 6]" {
		t.Errorf("on time: %v, want [0 4 6]", got)
	}
}
