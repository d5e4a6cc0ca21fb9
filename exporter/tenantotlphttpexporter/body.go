package tenantotlphttpexporter

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"

	"github.com/otelcol-gpu/otelcol-gpu/internal/bufpool"
)

// Request bodies of more than one part are built in buffers from
// internal/bufpool: a fresh buffer per request is 14-16% of everything the
// gateway allocates (and, for a queue on disk, is read into untouched pages).
var bodies = bufpool.Large

// body is one request's payload. A pooled one goes back to the pool once
// the sender is done with it and every reader the HTTP transport was given
// is finished: read to its end, or closed. The transport may close a
// request body after RoundTrip returns, and may ask for it again (GetBody)
// to retry on a new connection; confighttp's compression reads the body to
// its end and never closes it. A reader left neither read out nor closed
// only means that buffer is left to the garbage collector, never that it is
// reused while read.
type body struct {
	data []byte
	buf  *[]byte      // from bodies; nil when data is a record's own
	refs atomic.Int32 // the sender's, plus one per reader not yet finished
}

func newBody(size int) *body {
	buf := bodies.Get(size)
	b := &body{buf: buf, data: (*buf)[:0]}
	b.refs.Store(1)
	return b
}

// wrap is a body over a record's own data (never pooled).
func wrap(data []byte) *body {
	b := &body{data: data}
	b.refs.Store(1)
	return b
}

// reader is a new reader of the body, for one attempt of the request.
func (b *body) reader() io.ReadCloser {
	b.refs.Add(1)
	return &bodyReader{r: bytes.NewReader(b.data), b: b}
}

// done is the sender's release of the body (its request answered or given
// up).
func (b *body) done() { b.unref() }

func (b *body) unref() {
	if b.refs.Add(-1) == 0 && b.buf != nil {
		buf := b.buf
		b.buf, b.data = nil, nil
		bodies.Put(buf)
	}
}

type bodyReader struct {
	r      *bytes.Reader
	b      *body
	closed atomic.Bool // closed, or read to its end: it no longer reads the buffer
	eof    bool
}

var errBodyClosed = errors.New("tenant_otlp_http: request body read after it was closed")

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.eof {
		return 0, io.EOF
	}
	if !r.hold() {
		return 0, errBodyClosed
	}
	defer r.b.unref()
	n, err := r.r.Read(p)
	if err == io.EOF {
		// What was read is in p already: the buffer is not needed again.
		r.eof = true
		r.finish()
	}
	return n, err
}

// WriteTo writes what is left of the body to w in one call, so that
// confighttp's compression (io.Copy into its compressor) needs no 32 KiB
// copy buffer of its own per request. net/http's copy of a body of known
// length reads through an io.LimitReader and still allocates one
// (net.genericReadFrom).
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	if r.eof {
		return 0, nil
	}
	if !r.hold() {
		return 0, errBodyClosed
	}
	defer r.b.unref()
	n, err := r.r.WriteTo(w)
	if err == nil {
		r.eof = true
		r.finish()
	}
	return n, err
}

// hold keeps the buffer for one Read or WriteTo (released with unref): a
// Close from another goroutine meanwhile (the transport may close a body
// while its write loop still copies it) then gives the buffer back only
// once the copy is done, never while it is read. False once closed. It
// never counts up from zero: a body whose count reached zero has been
// given back (once), and a late call on its closed reader must not make
// it reach zero, and be given back, a second time.
func (r *bodyReader) hold() bool {
	for {
		if r.closed.Load() {
			return false
		}
		n := r.b.refs.Load()
		if n <= 0 {
			return false
		}
		if r.b.refs.CompareAndSwap(n, n+1) {
			break
		}
	}
	if r.closed.Load() {
		r.b.unref()
		return false
	}
	return true
}

func (r *bodyReader) Close() error {
	r.finish()
	return nil
}

func (r *bodyReader) finish() {
	if r.closed.CompareAndSwap(false, true) {
		r.b.unref()
	}
}
