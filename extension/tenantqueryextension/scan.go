package tenantqueryextension

import (
	"bytes"
	"strconv"
)

// answerCounts is what a successful answer says about its query's size.
type answerCounts struct {
	// series counts the series (or names, or values, or records) in the
	// answer; -1 when the answer is not shaped like the API's JSON.
	series int
	// seriesFetched and execMS are VictoriaMetrics' stats on query and
	// query_range ("stats":{"seriesFetched":"N","executionTimeMsec":M}):
	// the series the store read and the milliseconds it worked. 0 when
	// absent (other endpoints, other stores).
	seriesFetched, execMS int64
}

// scanAnswer reads a whole answer's counts (answerScanner, fed once).
func scanAnswer(ep *endpoint, body []byte) answerCounts {
	sc := newAnswerScanner(ep)
	sc.feed(body)
	return sc.counts()
}

// answerScanner counts a successful answer as it is read, in pieces: the
// elements of data.result for queries, of data for the rest, the records
// (lines) of an events query, the values or hits of the other events
// endpoints, and the stats. It keeps nothing of the answer but the last
// key (encoding/json takes ~130 us for a dashboard panel's answer, and needs
// the answer whole). It assumes well-formed JSON (the store's answer)
// and only tracks nesting, strings and keys.
type answerScanner struct {
	lines bool     // count lines, not elements
	path  []string // object keys from the root to the counted array

	stack     [16]scanFrame
	depth     int // containers open
	expectKey bool
	key       keyBuf // the last key read
	found     bool
	bad       bool
	out       answerCounts

	// A string or a literal (number, true, false, null) may span pieces.
	inString, escaped, stringIsKey bool
	inLiteral                      bool
	stat                           *int64 // the stat the string or literal is the value of
	token                          keyBuf // the key, or the stat's value, so far
	lastByte                       byte   // for lines: whether the answer ends in a newline
}

// keyBuf holds a key or a stat's value, up to maxKeyBytes+1 bytes.
type keyBuf struct {
	b [maxKeyBytes + 1]byte
	n int
}

func (k *keyBuf) bytes() []byte { return k.b[:k.n] }

func (k *keyBuf) add(p []byte) { k.n += copy(k.b[k.n:], p) }

type scanFrame struct {
	obj   bool
	match bool // the keys from the root down to this container are path's
	stats bool // the root's "stats" object
}

// maxKeyBytes bounds a captured key or stat value: no key that matters
// (data, result, stats, values, hits, seriesFetched, executionTimeMsec) nor
// any count is longer, so a longer one is kept only far enough to differ.
const maxKeyBytes = 32

func newAnswerScanner(ep *endpoint) *answerScanner {
	sc := &answerScanner{}
	switch {
	case ep.count == "lines":
		sc.lines = true
	case ep.count != "":
		sc.path = []string{ep.count}
	case ep.result || ep.events:
		sc.path = []string{"data", "result"}
	default:
		sc.path = []string{"data"}
	}
	return sc
}

// feed scans the next piece of the answer.
func (sc *answerScanner) feed(b []byte) {
	if len(b) == 0 {
		return
	}
	if sc.lines {
		sc.out.series += bytes.Count(b, []byte{'\n'})
		sc.lastByte = b[len(b)-1]
		return
	}
	for i := 0; i < len(b) && !sc.bad; i++ {
		if sc.inString {
			i = sc.continueString(b, i)
			continue
		}
		if sc.inLiteral {
			if i = sc.continueLiteral(b, i); sc.inLiteral {
				continue
			}
		}
		c := b[i]
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			continue
		case ',':
			if sc.depth > 0 && sc.stack[sc.depth-1].obj {
				sc.expectKey = true
			}
			continue
		case '}', ']':
			if sc.depth == 0 {
				sc.bad = true
				return
			}
			sc.depth--
			sc.expectKey = false
			continue
		}
		if sc.expectKey {
			if c != '"' {
				sc.bad = true
				return
			}
			sc.inString, sc.stringIsKey, sc.expectKey = true, true, false
			sc.token.n = 0
			continue
		}
		// A value starts here.
		if sc.inTarget() {
			sc.out.series++
		}
		sc.stat = nil
		if sc.depth == 2 && sc.stack[1].stats {
			switch string(sc.key.bytes()) {
			case "seriesFetched":
				sc.stat = &sc.out.seriesFetched
			case "executionTimeMsec":
				sc.stat = &sc.out.execMS
			}
		}
		sc.token.n = 0
		switch c {
		case '{', '[':
			if sc.depth == len(sc.stack) {
				sc.bad = true
				return
			}
			d := sc.depth
			key := sc.key.bytes()
			match := d == 0 || (sc.stack[d-1].match && sc.stack[d-1].obj && d <= len(sc.path) && string(key) == sc.path[d-1])
			stats := c == '{' && d == 1 && sc.stack[0].obj && string(key) == "stats"
			sc.stack[d] = scanFrame{obj: c == '{', match: match, stats: stats}
			sc.depth++
			sc.expectKey = c == '{'
			if sc.inTarget() {
				sc.found = true
			}
		case '"':
			sc.inString, sc.stringIsKey = true, false
		default:
			sc.inLiteral = true
			if i = sc.continueLiteral(b, i); !sc.inLiteral {
				i-- // the delimiter that ended it is read next
			}
		}
	}
}

// continueString reads a string from b[i] on, to its closing quote (whose
// index it returns) or to the end of b.
func (sc *answerScanner) continueString(b []byte, i int) int {
	for i < len(b) {
		if sc.escaped {
			sc.escaped = false
			sc.capture(b[i : i+1])
			i++
			continue
		}
		// The strings of an answer are short (names, values): a loop
		// beats bytes.IndexAny's set-up.
		k := i
		for k < len(b) && b[k] != '"' && b[k] != '\\' {
			k++
		}
		sc.capture(b[i:k])
		if k == len(b) {
			return len(b)
		}
		i = k
		if b[i] == '"' {
			sc.inString = false
			if sc.stringIsKey {
				sc.key = sc.token
			} else if sc.stat != nil { // seriesFetched is a string
				*sc.stat = parseCount(sc.token.bytes())
			}
			return i
		}
		sc.capture(b[i : i+1])
		sc.escaped = true
		i++
	}
	return i
}

// continueLiteral reads a literal from b[i] on: to the delimiter after it,
// whose index it returns, the literal ended; or to the end of b, returning
// the last index, the literal going on in the next piece.
func (sc *answerScanner) continueLiteral(b []byte, i int) int {
	j := i
	for j < len(b) && !delimiter[b[j]] {
		j++
	}
	if sc.stat != nil {
		sc.token.add(b[i:j])
	}
	if j == len(b) {
		return j - 1
	}
	sc.endLiteral()
	return j
}

func (sc *answerScanner) endLiteral() {
	sc.inLiteral = false
	if sc.stat != nil {
		*sc.stat = parseCount(sc.token.bytes())
	}
}

// capture keeps a key's or a stat's bytes, up to maxKeyBytes+1.
func (sc *answerScanner) capture(p []byte) {
	if (sc.stringIsKey && sc.inString) || sc.stat != nil {
		sc.token.add(p)
	}
}

func (sc *answerScanner) inTarget() bool {
	return sc.depth == len(sc.path)+1 && !sc.stack[sc.depth-1].obj && sc.stack[sc.depth-1].match
}

// counts is what the answer fed so far says, once it is whole.
func (sc *answerScanner) counts() answerCounts {
	if sc.lines {
		out := sc.out
		if sc.lastByte != 0 && sc.lastByte != '\n' {
			out.series++
		}
		return out
	}
	if sc.inLiteral {
		sc.endLiteral()
	}
	if sc.bad || sc.inString || !sc.found || sc.depth != 0 {
		return answerCounts{series: -1}
	}
	return sc.out
}

// parseCount reads a stat: a non-negative integer, else 0.
func parseCount(b []byte) int64 {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// delimiter marks the bytes that end a number or literal.
var delimiter = func() (d [256]bool) {
	for _, c := range []byte(",]} \t\n\r") {
		d[c] = true
	}
	return d
}()
