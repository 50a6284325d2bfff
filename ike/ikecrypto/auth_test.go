package ikecrypto

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"sync"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// refPSKAuth is RFC 7296 2.15 spelt out with crypto/hmac, without the
// cached HMACs of PSKAuth.
func refPSKAuth(p *PRF, psk, octets []byte) []byte {
	pad := hmac.New(p.hash, psk)
	pad.Write([]byte("Key Pad for IKEv2"))
	m := hmac.New(p.hash, pad.Sum(nil))
	m.Write(octets)
	return m.Sum(nil)
}

// TestPSKAuthCached checks PSKAuth, whose keyed HMACs are pooled per PRF
// and PSK, against the plain computation: for every PRF, for PSKs that
// differ in one byte or in length only, repeated (pooled HMACs are
// reused) and from several goroutines at once (for -race).
func TestPSKAuthCached(t *testing.T) {
	psks := [][]byte{[]byte("secret"), []byte("Secret"), []byte("secret\x00"), bytes.Repeat([]byte{0xa5}, 200)}
	for _, id := range []uint16{message.PRF_HMAC_SHA1, message.PRF_HMAC_SHA2_256, message.PRF_HMAC_SHA2_384, message.PRF_HMAC_SHA2_512} {
		p, err := LookupPRF(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(p.Name, func(t *testing.T) {
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 50 {
						psk := psks[(g+i)%len(psks)]
						octets := fmt.Appendf(nil, "signed octets %d/%d", g, i)
						want := refPSKAuth(p, psk, octets)
						if got := PSKAuth(p, psk, octets); !bytes.Equal(got, want) {
							t.Errorf("PSK %q, %q: got %x, want %x", psk, octets, got, want)
							return
						}
						if !VerifyPSKAuth(p, psk, octets, want) || VerifyPSKAuth(p, psks[(g+i+1)%len(psks)], octets, want) {
							t.Errorf("PSK %q, %q: VerifyPSKAuth wrong", psk, octets)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestPSKAuthCacheBound checks that cycling through more PSKs than
// maxPSKMACs keeps at most that many cached, and answers right after the
// cache starts over.
func TestPSKAuthCacheBound(t *testing.T) {
	p, _ := LookupPRF(message.PRF_HMAC_SHA2_256)
	octets := []byte("octets")
	for i := range 3 * maxPSKMACs {
		psk := fmt.Appendf(nil, "psk-%d", i)
		if got, want := PSKAuth(p, psk, octets), refPSKAuth(p, psk, octets); !bytes.Equal(got, want) {
			t.Fatalf("PSK %d: got %x, want %x", i, got, want)
		}
		pskMACs.Lock()
		n := len(pskMACs.m)
		pskMACs.Unlock()
		if n > maxPSKMACs {
			t.Fatalf("after %d PSKs: %d cached, want at most %d", i+1, n, maxPSKMACs)
		}
	}
}

func BenchmarkPSKAuth(b *testing.B) {
	p, _ := LookupPRF(message.PRF_HMAC_SHA2_256)
	psk, octets := []byte("espy-bench-psk"), bytes.Repeat([]byte{1}, 400)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			PSKAuth(p, psk, octets)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refPSKAuth(p, psk, octets)
		}
	})
}
