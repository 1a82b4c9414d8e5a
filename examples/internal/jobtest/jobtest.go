// Package jobtest checks the example job configs in their tests.
package jobtest

import (
	"testing"

	"github.com/wasmstream/wasmstream/host/job"
)

// EventTime parses and validates a job config, checks that it takes event
// time from the field field with a max_out_of_orderness of bound ms, and
// returns it. A config that does not parse or validate fails the test at
// once.
func EventTime(t testing.TB, yaml []byte, field string, bound int64) *job.Config {
	t.Helper()
	c, err := job.Parse(yaml)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if kind, name, _ := c.TimeSource(); kind != job.EventTimeFromField || name != field ||
		c.EventTime.MaxOutOfOrderness.D().Milliseconds() != bound {
		t.Errorf("event_time %+v, want %s with max_out_of_orderness %d ms", c.EventTime, field, bound)
	}
	return c
}
