package ikecrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

type suite struct {
	encr    uint16
	bits    int
	integ   uint16
	encrLen int
	intLen  int
}

var suites = []suite{
	{message.ENCR_AES_CBC, 128, message.AUTH_HMAC_SHA1_96, 16, 20},
	{message.ENCR_AES_CBC, 256, message.AUTH_HMAC_SHA2_256_128, 32, 32},
	{message.ENCR_AES_CBC, 192, message.AUTH_HMAC_SHA2_384_192, 24, 48},
	{message.ENCR_AES_CBC, 256, message.AUTH_HMAC_SHA2_512_256, 32, 64},
	{message.ENCR_AES_CTR, 128, message.AUTH_HMAC_SHA2_256_128, 20, 32},
	{message.ENCR_AES_GCM_8, 128, message.AUTH_NONE, 20, 0},
	{message.ENCR_AES_GCM_12, 256, message.AUTH_NONE, 36, 0},
	{message.ENCR_AES_GCM_16, 256, message.AUTH_NONE, 36, 0},
	{message.ENCR_CHACHA20_POLY1305, 0, message.AUTH_NONE, 36, 0},
}

func (s suite) String() string {
	e, _ := LookupEncr(s.encr)
	name := e.Name
	if s.bits != 0 {
		name = fmt.Sprintf("%s-%d", e.Name, s.bits)
	}
	if in, err := LookupInteg(s.integ); err == nil {
		name += "+" + in.Name
	}
	return name
}

func (s suite) cipher(t testing.TB) *SKCipher {
	c, err := NewSKCipher(s.encr, s.bits, s.integ, bytes.Repeat([]byte{0x11}, s.encrLen), bytes.Repeat([]byte{0x22}, s.intLen))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// head builds an IKE header and SK generic header for an SK body of n bytes.
func head(n int) []byte {
	h := message.Header{SPIi: 1, SPIr: 2, NextPayload: message.PayloadSK, Exchange: message.IKE_AUTH, Flags: message.FlagInitiator, MessageID: 1,
		Length: uint32(message.HeaderLen + 4 + n)}
	b := message.AppendHeader(nil, &h)
	b = append(b, byte(message.PayloadIDi), 0, 0, 0)
	binary.BigEndian.PutUint16(b[len(b)-2:], uint16(4+n))
	return b
}

func TestSKRoundTrip(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			c := s.cipher(t)
			for _, n := range []int{0, 1, 15, 16, 17, 100} {
				plain := bytes.Repeat([]byte{byte(n)}, n)
				h := head(c.SealedLen(n))
				msg, err := c.Seal(h, plain)
				if err != nil {
					t.Fatal(err)
				}
				if len(msg) != len(h)+c.SealedLen(n) {
					t.Fatalf("sealed %d bytes, SealedLen says %d", len(msg)-len(h), c.SealedLen(n))
				}
				got, err := c.Open(append([]byte(nil), msg...), len(h))
				if err != nil {
					t.Fatalf("open %d bytes: %v", n, err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("open %d bytes: wrong plaintext", n)
				}
				// Any flipped bit, in the header, IV, ciphertext or ICV,
				// must be caught by the ICV or tag.
				for _, off := range []int{0, 20, len(h) - 1, len(h), len(msg) / 2, len(msg) - 1} {
					bad := append([]byte(nil), msg...)
					bad[off] ^= 0x40
					if _, err := c.Open(bad, len(h)); !errors.Is(err, ErrIntegrity) {
						t.Fatalf("bit flip at %d of %d: %v", off, len(msg), err)
					}
				}
			}
			if _, err := c.Open(head(2), message.HeaderLen+4); !errors.Is(err, ErrShort) {
				t.Fatalf("short payload: %v", err)
			}
		})
	}
}

func TestSKWrongKey(t *testing.T) {
	s := suites[7]
	a := s.cipher(t)
	b, err := NewSKCipher(s.encr, s.bits, s.integ, bytes.Repeat([]byte{0x12}, s.encrLen), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := head(a.SealedLen(10))
	msg, _ := a.Seal(h, make([]byte, 10))
	if _, err := b.Open(msg, len(h)); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong key: %v", err)
	}
}

// TestSKBadPadding seals plaintext whose pad length byte claims more
// padding than there is, with a valid ICV, for CBC and an AEAD.
func TestSKBadPadding(t *testing.T) {
	for _, s := range []suite{suites[1], suites[7]} {
		c := s.cipher(t)
		n := 32 // two AES blocks, last byte the pad length
		h := head(c.encr.IVLen + n + c.icv)
		out := append(append([]byte(nil), h...), make([]byte, c.encr.IVLen)...)
		out = append(out, make([]byte, n)...)
		out[len(out)-1] = 40
		msg := c.sealPadded(h, out, len(h)+c.encr.IVLen)
		if _, err := c.Open(msg, len(h)); !errors.Is(err, ErrPadding) {
			t.Fatalf("%v: %v, want ErrPadding", s, err)
		}
	}
}

// TestGCMTruncatedTag checks the 8- and 12-byte ICV forms against the
// standard library's 16-byte GCM: same ciphertext, tag a prefix.
func TestGCMTruncatedTag(t *testing.T) {
	key := bytes.Repeat([]byte{0x11}, 16)
	blk, _ := aes.NewCipher(key)
	full, _ := cipher.NewGCM(blk)
	for _, s := range []suite{suites[5], {message.ENCR_AES_GCM_12, 128, message.AUTH_NONE, 20, 0}} {
		c := s.cipher(t)
		plain := []byte("inner payloads!")
		h := head(c.SealedLen(len(plain)))
		msg, _ := c.Seal(h, plain)
		body := msg[len(h):]
		iv := body[:8]
		nonce := append(bytes.Repeat([]byte{0x11}, 4), iv...)
		want := full.Seal(nil, nonce, append(append([]byte(nil), plain...), 0), h)
		got := body[8:]
		if !bytes.Equal(got, want[:len(got)]) {
			t.Fatalf("%v: ciphertext|tag not a prefix of 16-byte GCM", s)
		}
	}
}

func TestSKCipherRejects(t *testing.T) {
	if _, err := NewSKCipher(message.ENCR_NULL, 0, message.AUTH_HMAC_SHA2_256_128, nil, make([]byte, 32)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ENCR_NULL for IKE: %v", err)
	}
	if _, err := NewSKCipher(message.ENCR_AES_CBC, 100, message.AUTH_HMAC_SHA2_256_128, make([]byte, 16), make([]byte, 32)); !errors.Is(err, ErrKeyLength) {
		t.Fatalf("key length 100: %v", err)
	}
	if _, err := NewSKCipher(message.ENCR_AES_CBC, 128, message.AUTH_HMAC_SHA2_256_128, make([]byte, 15), make([]byte, 32)); !errors.Is(err, ErrKeyLength) {
		t.Fatalf("short key: %v", err)
	}
	if _, err := NewSKCipher(message.ENCR_AES_GCM_16, 128, message.AUTH_HMAC_SHA2_256_128, make([]byte, 20), nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("AEAD with integrity: %v", err)
	}
	if _, err := NewSKCipher(message.ENCR_AES_CBC, 128, message.AUTH_HMAC_MD5_96, make([]byte, 16), make([]byte, 16)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("MD5: %v", err)
	}
}

func BenchmarkSKSealOpen(b *testing.B) {
	plain := make([]byte, 512)
	for _, s := range []suite{suites[1], suites[4], suites[7], suites[8]} {
		b.Run(s.String(), func(b *testing.B) {
			c := s.cipher(b)
			h := head(c.SealedLen(len(plain)))
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for b.Loop() {
				msg, err := c.Seal(h, plain)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Open(msg, len(h)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
