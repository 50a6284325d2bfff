package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the seed corpus")

// sealedSeed returns a valid protected message for suite i.
func sealedSeed(tb testing.TB, i int, plain []byte) []byte {
	c := suites[i].cipher(tb)
	h := head(c.SealedLen(len(plain)))
	msg, err := c.Seal(h, plain)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

// FuzzOpen feeds arbitrary messages and SK body offsets to every suite's
// Open: it must return an error or a plaintext within the message, never
// panic.
func FuzzOpen(f *testing.F) {
	for i := range suites {
		f.Add(uint8(i), sealedSeed(f, i, []byte("inner payload chain")), uint16(32))
	}
	ciphers := make([]*SKCipher, len(suites))
	for i := range suites {
		ciphers[i] = suites[i].cipher(f)
	}
	f.Fuzz(func(t *testing.T, which uint8, msg []byte, body uint16) {
		c := ciphers[int(which)%len(ciphers)]
		pt, err := c.Open(msg, int(body))
		if err == nil && len(pt) > len(msg) {
			t.Fatalf("plaintext of %d bytes from a %d-byte message", len(pt), len(msg))
		}
	})
}

// TestWriteSeedCorpus regenerates testdata/fuzz/FuzzOpen with -update.
func TestWriteSeedCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range suites {
		body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\nuint16(32)\n", i, sealedSeed(t, i, []byte("inner payload chain")))
		if err := os.WriteFile(filepath.Join(dir, s.String()), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Signatures by throwaway keys: the AlgorithmIdentifier prefixes and
	// signature shapes are what the fuzzer needs.
	dir = filepath.Join("testdata", "fuzz", "FuzzVerifyAuth")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		k crypto.Signer
		s *SignatureScheme
	}{{p256, ECDSASHA256}, {ed, Ed25519}, {testRSAKey(t), RSAPSS256}, {testRSAKey(t), RSASHA256}} {
		d, err := SignAuth(c.k, c.s, []byte("other octets"), nil)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", d)
		if err := os.WriteFile(filepath.Join(dir, c.s.Name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzVerifyAuth feeds arbitrary Digital Signature AUTH data to VerifyAuth
// with keys of each kind: it must refuse it without panicking (a forged
// signature that verifies would be a finding in itself).
func FuzzVerifyAuth(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk := testRSAKey(f)
	octets := []byte("signed octets")
	for _, c := range []struct {
		k crypto.Signer
		s *SignatureScheme
	}{{p256, ECDSASHA256}, {ed, Ed25519}, {rk, RSAPSS256}, {rk, RSASHA256}} {
		d, err := SignAuth(c.k, c.s, []byte("other octets"), nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
	}
	keys := []crypto.PublicKey{p256.Public(), ed.Public(), rk.Public()}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range keys {
			if s, err := VerifyAuth(k, data, octets); err == nil {
				t.Fatalf("%s signature over other octets verified", s.Name)
			}
		}
	})
}
