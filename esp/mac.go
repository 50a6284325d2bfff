package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/espy-dpi/espy/ike/message"
)

// mac computes the truncated ICV of a non-AEAD SA over data followed by
// extra (the implicit ESN high bits, RFC 4303 2.2.1).
type mac interface {
	sum(icv, data, extra []byte)
	size() int
}

// newMAC returns the integrity transform id keyed with key.
func newMAC(id uint16, key []byte) (mac, error) {
	var h func() hash.Hash
	var keyLen, icv int
	switch id {
	case message.AUTH_HMAC_SHA1_96:
		h, keyLen, icv = sha1.New, 20, 12
	case message.AUTH_HMAC_SHA2_256_128:
		h, keyLen, icv = sha256.New, 32, 16
	case message.AUTH_HMAC_SHA2_384_192:
		h, keyLen, icv = sha512.New384, 48, 24
	case message.AUTH_HMAC_SHA2_512_256:
		h, keyLen, icv = sha512.New, 64, 32
	case message.AUTH_AES_XCBC_96:
		if len(key) != 16 {
			return nil, fmt.Errorf("esp: aes-xcbc key of %d bytes: %w", len(key), ErrUnsupported)
		}
		return newXCBC(key), nil
	case message.AUTH_AES_CMAC_96:
		if len(key) != 16 {
			return nil, fmt.Errorf("esp: aes-cmac key of %d bytes: %w", len(key), ErrUnsupported)
		}
		return newCMAC(key), nil
	default:
		return nil, fmt.Errorf("esp: integrity transform %d: %w", id, ErrUnsupported)
	}
	if len(key) != keyLen {
		return nil, fmt.Errorf("esp: integrity transform %d: key of %d bytes, want %d: %w", id, len(key), keyLen, ErrUnsupported)
	}
	m := &hmacICV{h: hmac.New(h, key), icv: icv}
	m.buf = make([]byte, 0, m.h.Size())
	return m, nil
}

// hmacICV is HMAC truncated to the ICV length (RFC 2404, RFC 4868).
type hmacICV struct {
	h   hash.Hash
	icv int
	buf []byte // full HMAC output, reused
}

func (m *hmacICV) size() int { return m.icv }

func (m *hmacICV) sum(icv, data, extra []byte) {
	m.h.Reset()
	m.h.Write(data)
	m.h.Write(extra)
	m.buf = m.h.Sum(m.buf[:0])
	copy(icv, m.buf[:m.icv])
}

// cbcMAC is the CBC-MAC core shared by AES-XCBC-MAC-96 (RFC 3566) and
// AES-CMAC-96 (RFC 4494): they differ only in how the keys of the last
// block are made.
type cbcMAC struct {
	b          cipher.Block
	kComplete  [16]byte // XORed into a complete last block
	kPadded    [16]byte // XORed into a padded last block
	state, buf [16]byte
	n          int // bytes in buf
}

func newXCBC(key []byte) *cbcMAC {
	k, _ := aes.NewCipher(key)
	var k1 [16]byte
	m := &cbcMAC{}
	fill := func(dst *[16]byte, v byte) {
		var in [16]byte
		for i := range in {
			in[i] = v
		}
		k.Encrypt(dst[:], in[:])
	}
	fill(&k1, 1)
	fill(&m.kComplete, 2)
	fill(&m.kPadded, 3)
	m.b, _ = aes.NewCipher(k1[:])
	return m
}

func newCMAC(key []byte) *cbcMAC {
	b, _ := aes.NewCipher(key)
	m := &cbcMAC{b: b}
	var l [16]byte
	b.Encrypt(l[:], l[:])
	dbl := func(dst, src *[16]byte) {
		carry := src[0] >> 7
		for i := 0; i < 15; i++ {
			dst[i] = src[i]<<1 | src[i+1]>>7
		}
		dst[15] = src[15]<<1 ^ 0x87*carry
	}
	dbl(&m.kComplete, &l)
	dbl(&m.kPadded, &m.kComplete)
	return m
}

func (m *cbcMAC) size() int { return 12 }

func (m *cbcMAC) write(p []byte) {
	for len(p) > 0 {
		if m.n == 16 {
			// Only now is it known that this block is not the last.
			for i := range m.state {
				m.state[i] ^= m.buf[i]
			}
			m.b.Encrypt(m.state[:], m.state[:])
			m.n = 0
		}
		c := copy(m.buf[m.n:], p)
		m.n += c
		p = p[c:]
	}
}

func (m *cbcMAC) sum(icv, data, extra []byte) {
	m.state, m.n = [16]byte{}, 0
	m.write(data)
	m.write(extra)
	k := &m.kComplete
	if m.n < 16 {
		m.buf[m.n] = 0x80
		for i := m.n + 1; i < 16; i++ {
			m.buf[i] = 0
		}
		k = &m.kPadded
	}
	for i := range m.state {
		m.state[i] ^= m.buf[i] ^ k[i]
	}
	m.b.Encrypt(m.state[:], m.state[:])
	copy(icv, m.state[:12])
}

// full returns the untruncated 128-bit MAC of data, for known-answer tests.
func (m *cbcMAC) full(data []byte) [16]byte {
	var icv [12]byte
	m.sum(icv[:], data, nil)
	return m.state
}
