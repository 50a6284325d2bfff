package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

var updateLegacy = flag.Bool("update-legacy", false, "rewrite the FuzzVerifyLegacy seed corpus")

type legacyKeys struct {
	rsa              *rsa.PrivateKey
	p256, p384, p521 *ecdsa.PrivateKey
}

func newLegacyKeys(tb testing.TB) legacyKeys {
	k := legacyKeys{rsa: testRSAKey(tb)}
	k.p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.p384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	k.p521, _ = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	return k
}

// TestLegacySignVerify signs and verifies each legacy method, and checks
// what RFC 7296 and RFC 4754 fix: method 1 is PKCS#1 v1.5 over SHA-1 (the
// signature verifies with crypto/rsa directly), methods 9–11 are r | s of
// exactly twice the order's size, with the method's hash.
func TestLegacySignVerify(t *testing.T) {
	k := newLegacyKeys(t)
	octets := []byte("RealMessage1 | NonceRData | MACedIDForI")
	for _, c := range []struct {
		key    crypto.Signer
		m      message.AuthMethod
		sigLen int
	}{
		{k.rsa, message.AuthRSASig, 256},
		{k.p256, message.AuthECDSA256, 64},
		{k.p384, message.AuthECDSA384, 96},
		{k.p521, message.AuthECDSA521, 132},
	} {
		t.Run(fmt.Sprint(c.m), func(t *testing.T) {
			if m, err := LegacyMethod(c.key.Public()); err != nil || m != c.m {
				t.Fatalf("LegacyMethod: %v, %v", m, err)
			}
			data, err := SignLegacy(c.key, c.m, octets, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != c.sigLen {
				t.Fatalf("signature of %d bytes, want %d", len(data), c.sigLen)
			}
			if err := VerifyLegacy(c.key.Public(), c.m, data, octets); err != nil {
				t.Fatal(err)
			}
			switch pub := c.key.Public().(type) {
			case *rsa.PublicKey:
				h := sha1.Sum(octets)
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, h[:], data); err != nil {
					t.Fatalf("not PKCS#1 v1.5 with SHA-1: %v", err)
				}
			case *ecdsa.PublicKey:
				hash, _, _ := legacyParams(c.m)
				d := hash.New()
				d.Write(octets)
				n := len(data) / 2
				if !ecdsa.Verify(pub, d.Sum(nil), new(big.Int).SetBytes(data[:n]), new(big.Int).SetBytes(data[n:])) {
					t.Fatal("not r | s over the method's hash")
				}
			}
			if err := VerifyLegacy(c.key.Public(), c.m, data, append([]byte("x"), octets...)); !errors.Is(err, ErrSignature) {
				t.Fatalf("other octets: %v", err)
			}
			for _, i := range []int{0, len(data) / 2, len(data) - 1} {
				bad := append([]byte(nil), data...)
				bad[i] ^= 1
				if err := VerifyLegacy(c.key.Public(), c.m, bad, octets); !errors.Is(err, ErrSignature) {
					t.Fatalf("byte %d flipped: %v", i, err)
				}
			}
			for _, bad := range [][]byte{nil, data[:len(data)-1], append(append([]byte(nil), data...), 0)} {
				if err := VerifyLegacy(c.key.Public(), c.m, bad, octets); !errors.Is(err, ErrSignature) {
					t.Fatalf("%d-byte signature: %v", len(bad), err)
				}
			}
		})
	}
}

// TestLegacyRejects covers keys that do not fit the method (wrong curve,
// hence wrong hash, and wrong key kind) on both sides, and methods that
// are not legacy signatures.
func TestLegacyRejects(t *testing.T) {
	k := newLegacyKeys(t)
	octets := []byte("octets")
	p256sig, _ := SignLegacy(k.p256, message.AuthECDSA256, octets, nil)
	rsaSig, _ := SignLegacy(k.rsa, message.AuthRSASig, octets, nil)
	_, ed, _ := ed25519Key()
	for _, c := range []struct {
		name string
		pub  crypto.PublicKey
		m    message.AuthMethod
		data []byte
		want error
	}{
		{"P-256 signature, method 10", k.p256.Public(), message.AuthECDSA384, p256sig, ErrSignature},
		{"P-256 signature, P-384 key", k.p384.Public(), message.AuthECDSA256, p256sig, ErrSignature},
		{"P-256 signature as P-521 method", k.p521.Public(), message.AuthECDSA521, p256sig, ErrSignature},
		{"ECDSA method, RSA key", k.rsa.Public(), message.AuthECDSA256, p256sig, ErrSignature},
		{"RSA method, ECDSA key", k.p256.Public(), message.AuthRSASig, rsaSig, ErrSignature},
		{"RSA method, Ed25519 key", ed, message.AuthRSASig, rsaSig, ErrSignature},
		{"zero r and s", k.p256.Public(), message.AuthECDSA256, make([]byte, 64), ErrSignature},
		{"r and s all ones", k.p256.Public(), message.AuthECDSA256, bytesOf(0xff, 64), ErrSignature},
		{"PSK method", k.p256.Public(), message.AuthSharedKeyMIC, p256sig, ErrUnsupported},
		{"RFC 7427 method", k.p256.Public(), message.AuthDigitalSig, p256sig, ErrUnsupported},
		{"DSS", k.p256.Public(), message.AuthDSS, p256sig, ErrUnsupported},
	} {
		if err := VerifyLegacy(c.pub, c.m, c.data, octets); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		key crypto.Signer
		m   message.AuthMethod
	}{{k.p384, message.AuthECDSA256}, {k.rsa, message.AuthECDSA521}, {k.p256, message.AuthRSASig}} {
		if _, err := SignLegacy(c.key, c.m, octets, nil); err == nil {
			t.Errorf("signing method %d with %s worked", c.m, keyName(c.key.Public()))
		}
	}
	if _, err := LegacyMethod(ed); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Ed25519 has no legacy method: %v", err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if _, err := LegacyMethod(p224.Public()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("P-224 has no legacy method: %v", err)
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func ed25519Key() (crypto.PublicKey, crypto.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return priv.Public(), priv, nil
}

// FuzzVerifyLegacy feeds arbitrary signatures to VerifyLegacy under every
// legacy method and key: it must refuse them without panicking.
func FuzzVerifyLegacy(f *testing.F) {
	k := newLegacyKeys(f)
	for _, s := range []crypto.Signer{k.rsa, k.p256, k.p384, k.p521} {
		m, _ := LegacyMethod(s.Public())
		d, err := SignLegacy(s, m, []byte("other octets"), nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(m), d)
	}
	keys := []crypto.PublicKey{k.rsa.Public(), k.p256.Public(), k.p384.Public(), k.p521.Public()}
	octets := []byte("signed octets")
	f.Fuzz(func(t *testing.T, m uint8, data []byte) {
		for _, pub := range keys {
			if VerifyLegacy(pub, message.AuthMethod(m), data, octets) == nil {
				t.Fatalf("method %d signature over other octets verified", m)
			}
		}
	})
}

// TestWriteLegacySeedCorpus regenerates testdata/fuzz/FuzzVerifyLegacy
// with -update-legacy.
func TestWriteLegacySeedCorpus(t *testing.T) {
	if !*updateLegacy {
		t.Skip("run with -update-legacy to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerifyLegacy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k := newLegacyKeys(t)
	for _, s := range []crypto.Signer{k.rsa, k.p256, k.p384, k.p521} {
		m, _ := LegacyMethod(s.Public())
		d, err := SignLegacy(s, m, []byte("other octets"), nil)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", m, d)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("method-%d", m)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Wrong sizes and an all-zero r | s.
	for name, body := range map[string]string{
		"short-p256": "go test fuzz v1\nuint8(9)\n[]byte(\"\\x01\\x02\")\n",
		"zero-p384":  fmt.Sprintf("go test fuzz v1\nuint8(10)\n[]byte(%q)\n", make([]byte, 96)),
		"empty-rsa":  "go test fuzz v1\nuint8(1)\n[]byte(\"\")\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
