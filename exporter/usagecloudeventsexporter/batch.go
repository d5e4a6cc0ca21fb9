package usagecloudeventsexporter

// batches cuts events, in order, into runs of at most maxEvents events
// whose JSON array is at most maxBytes long; an event longer than maxBytes
// on its own goes alone.
func batches(evs []encoded, maxEvents, maxBytes int) [][]encoded {
	var out [][]encoded
	start, size := 0, 0
	for i, ev := range evs {
		n := i - start
		// "[" and "]", and a comma before every event but the first.
		grown := size + len(ev.body) + 1
		if n == 0 {
			grown = 2 + len(ev.body)
		}
		if n > 0 && (n == maxEvents || grown > maxBytes) {
			out = append(out, evs[start:i])
			start, grown = i, 2+len(ev.body)
		}
		size = grown
	}
	if start < len(evs) {
		out = append(out, evs[start:])
	}
	return out
}

// body is the batch's request body: a JSON array of its events.
func body(batch []encoded) []byte {
	n := 2
	for _, ev := range batch {
		n += len(ev.body) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, ev := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev.body...)
	}
	return append(b, ']')
}
