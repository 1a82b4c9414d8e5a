package engine

// ackInfo is what the engine needs from a JetStream message's reply
// subject.
type ackInfo struct {
	seq     uint64 // stream sequence
	tsNanos int64  // publish time, ns since the Unix epoch
	pending uint64 // messages left for the consumer after this one
}

// parseAck reads the stream sequence, timestamp and pending count from a
// JetStream ack subject without allocating:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>...]
func parseAck(reply string) (ackInfo, bool) {
	const prefix = "$JS.ACK."
	if len(reply) < len(prefix) || reply[:len(prefix)] != prefix {
		return ackInfo{}, false
	}
	// Token boundaries after the prefix; at most 12 tokens matter.
	var starts, ends [12]int
	n := 0
	start := len(prefix)
	for i := len(prefix); i <= len(reply); i++ {
		if i == len(reply) || reply[i] == '.' {
			if n < len(starts) {
				starts[n], ends[n] = start, i
			}
			n++
			start = i + 1
		}
	}
	// n counts tokens after "$JS.ACK.": 7 for the old form, 9 or more for
	// the new one.
	var sseq, tm, pend int
	switch {
	case n == 7:
		sseq, tm, pend = 3, 5, 6
	case n >= 9:
		sseq, tm, pend = 5, 7, 8
	default:
		return ackInfo{}, false
	}
	num := func(i int) (uint64, bool) {
		s := reply[starts[i]:ends[i]]
		if len(s) == 0 || len(s) > 20 {
			return 0, false
		}
		var v uint64
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + uint64(c-'0')
		}
		return v, true
	}
	a := ackInfo{}
	var ok1, ok2, ok3 bool
	var ts uint64
	a.seq, ok1 = num(sseq)
	ts, ok2 = num(tm)
	a.pending, ok3 = num(pend)
	a.tsNanos = int64(ts)
	return a, ok1 && ok2 && ok3
}
