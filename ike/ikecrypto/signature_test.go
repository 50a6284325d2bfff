package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return rsaKey
}

// TestAlgorithmIdentifiers pins the DER encodings against the byte strings
// printed in RFC 7427 appendix A.
func TestAlgorithmIdentifiers(t *testing.T) {
	for _, c := range []struct {
		s   *SignatureScheme
		hex string
	}{
		{RSASHA256, "300d06092a864886f70d01010b0500"},
		{RSASHA384, "300d06092a864886f70d01010c0500"},
		{RSASHA512, "300d06092a864886f70d01010d0500"},
		{ECDSASHA256, "300a06082a8648ce3d040302"},
		{ECDSASHA384, "300a06082a8648ce3d040303"},
		{ECDSASHA512, "300a06082a8648ce3d040304"},
		{Ed25519, "300506032b6570"},
		// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (appendix A.4.3).
		{RSAPSS256, "3041" + "06092a864886f70d01010a" + "3034" + "a00f300d0609608648016503040201" + "0500" +
			"a11c301a06092a864886f70d010108300d0609608648016503040201" + "0500" + "a203020120"},
	} {
		if got := hex.EncodeToString(c.s.algID); got != c.hex {
			t.Errorf("%s: %s, want %s", c.s.Name, got, c.hex)
		}
	}
}

func TestSignVerify(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk := testRSAKey(t)
	octets := []byte("RealMessage1 | NonceRData | MACedIDForI")
	for _, c := range []struct {
		key crypto.Signer
		s   *SignatureScheme
	}{
		{rk, RSASHA256}, {rk, RSASHA384}, {rk, RSASHA512}, {rk, RSAPSS256}, {rk, RSAPSS384}, {rk, RSAPSS512},
		{p256, ECDSASHA256}, {p384, ECDSASHA384}, {p521, ECDSASHA512}, {p256, ECDSASHA512}, {ed, Ed25519},
	} {
		t.Run(c.s.Name, func(t *testing.T) {
			data, err := SignAuth(c.key, c.s, octets, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifyAuth(c.key.Public(), data, octets)
			if err != nil || got != c.s {
				t.Fatalf("verify: %v, %v", got, err)
			}
			if _, err := VerifyAuth(c.key.Public(), data, append([]byte("x"), octets...)); !errors.Is(err, ErrSignature) {
				t.Fatalf("other octets: %v", err)
			}
			bad := append([]byte(nil), data...)
			bad[len(bad)-1] ^= 1
			if _, err := VerifyAuth(c.key.Public(), bad, octets); !errors.Is(err, ErrSignature) {
				t.Fatalf("flipped signature: %v", err)
			}
		})
	}
	// A signature must not verify under a key of another kind, and an
	// unknown or truncated AlgorithmIdentifier is refused.
	data, _ := SignAuth(p256, ECDSASHA256, octets, nil)
	if _, err := VerifyAuth(&rk.PublicKey, data, octets); !errors.Is(err, ErrSignature) {
		t.Fatalf("ECDSA AUTH with an RSA key: %v", err)
	}
	if _, err := VerifyAuth(p256.Public(), append([]byte{3, 1, 2, 3}, 0), octets); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown AlgorithmIdentifier: %v", err)
	}
	if _, err := VerifyAuth(p256.Public(), []byte{200, 1}, octets); !errors.Is(err, ErrSignature) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := SignAuth(p256, RSASHA256, octets, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("RSA scheme with an EC key: %v", err)
	}
}
