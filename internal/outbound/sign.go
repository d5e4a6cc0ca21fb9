package outbound

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries Sign's value on every delivery.
const SignatureHeader = "X-Otelcol-Gpu-Signature"

// Sign returns the signature header value of body sent at at:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix>." + body)>" (the
// Stripe scheme). The signed timestamp lets receivers refuse replays of an
// old delivery.
func Sign(secret []byte, at time.Time, body []byte) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// Verify checks a SignatureHeader value against body: the timestamp must be
// within tolerance of now (either way) and one of the v1 signatures (there
// may be several while a secret is rotated) must match, compared in constant
// time. It is what customers' receivers do, and what our tests do.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return errors.New("signature: malformed header")
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return errors.New("signature: malformed v1")
			}
			sigs = append(sigs, sig)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("signature: missing or malformed timestamp")
	}
	if len(sigs) == 0 {
		return errors.New("signature: no v1 signature")
	}
	if d := now.Sub(time.Unix(unix, 0)).Abs(); d > tolerance {
		return fmt.Errorf("signature: timestamp %d is %s away from now, over the tolerance of %s", unix, d, tolerance)
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return errors.New("signature: mismatch")
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
