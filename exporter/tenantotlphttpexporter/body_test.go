package tenantotlphttpexporter

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// A pooled body goes back to the pool only when the sender is done and
// every reader handed to the transport is closed, in any order; a reader
// closed twice, or read after its close, never touches the buffer again.
func TestABodyIsReusedOnlyOnceEveryReaderIsClosed(t *testing.T) {
	for _, senderFirst := range []bool{true, false} {
		b := newBody(100)
		b.data = append(b.data, "0123456789"...)
		r1 := b.reader()
		r2 := b.reader() // a retry on a new connection (GetBody)
		got, err := io.ReadAll(r1)
		require.NoError(t, err)
		require.Equal(t, "0123456789", string(got))

		if senderFirst {
			b.done()
		}
		require.NoError(t, r1.Close())
		require.NoError(t, r1.Close(), "a second close is harmless")
		require.NotNil(t, b.buf, "a reader is still open: not back in the pool")
		_, err = r1.Read(make([]byte, 4))
		require.ErrorIs(t, err, errBodyClosed)

		require.NoError(t, r2.Close())
		if !senderFirst {
			require.NotNil(t, b.buf, "the sender still holds it")
			b.done()
		}
		require.Nil(t, b.buf, "back in the pool")
		require.Nil(t, b.data)
	}

	// A record's own data is never put in the pool.
	own := []byte("abc")
	b := wrap(own)
	r := b.reader()
	require.NoError(t, r.Close())
	b.done()
	require.Equal(t, "abc", string(own))
}
