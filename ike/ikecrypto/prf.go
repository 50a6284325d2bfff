package ikecrypto

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/espy-dpi/espy/ike/message"
)

// PRF is an HMAC-based pseudorandom function (Transform Type 2).
type PRF struct {
	ID   uint16
	Name string
	hash func() hash.Hash
	size int
}

var prfs = map[uint16]*PRF{
	message.PRF_HMAC_SHA1:     {ID: message.PRF_HMAC_SHA1, Name: "prf-hmac-sha1", hash: sha1.New, size: sha1.Size},
	message.PRF_HMAC_SHA2_256: {ID: message.PRF_HMAC_SHA2_256, Name: "prf-hmac-sha2-256", hash: sha256.New, size: sha256.Size},
	message.PRF_HMAC_SHA2_384: {ID: message.PRF_HMAC_SHA2_384, Name: "prf-hmac-sha2-384", hash: sha512.New384, size: sha512.Size384},
	message.PRF_HMAC_SHA2_512: {ID: message.PRF_HMAC_SHA2_512, Name: "prf-hmac-sha2-512", hash: sha512.New, size: sha512.Size},
}

// LookupPRF returns the PRF for transform id.
func LookupPRF(id uint16) (*PRF, error) {
	if p, ok := prfs[id]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("ikecrypto: PRF transform %d: %w", id, ErrUnsupported)
}

// Size returns the output length, which is also the preferred key length
// (SK_d, SK_pi, SK_pr).
func (p *PRF) Size() int { return p.size }

// Sum returns prf(key, data[0] | data[1] | ...).
func (p *PRF) Sum(key []byte, data ...[]byte) []byte {
	return p.sum(make([]byte, 0, p.size), key, data...)
}

// sum appends prf(key, data[0] | data[1] | ...) to b.
func (p *PRF) sum(b, key []byte, data ...[]byte) []byte {
	m := hmac.New(p.hash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(b)
}

// Plus returns the first n bytes of prf+(key, seed) (RFC 7296 section 2.13):
// T1 = prf(K, S | 0x01), Ti = prf(K, Ti-1 | S | i). The counter is one
// byte, so at most 255 blocks can be produced.
func (p *PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 || n > 255*p.size {
		return nil, fmt.Errorf("ikecrypto: prf+ of %d bytes exceeds 255 blocks: %w", n, ErrKeyLength)
	}
	out := make([]byte, 0, n+p.size)
	m := hmac.New(p.hash, key)
	var t []byte
	ctr := []byte{0} // one allocation, not one per block
	for i := 1; len(out) < n; i++ {
		ctr[0] = byte(i)
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write(ctr)
		t = m.Sum(out[len(out):])
		out = out[:len(out)+len(t)]
	}
	return out[:n:n], nil
}
