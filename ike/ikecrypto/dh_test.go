package ikecrypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

func TestKeyExchangeAgrees(t *testing.T) {
	for _, g := range SupportedGroups {
		a, err := GenerateKey(g, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := GenerateKey(g, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := a.SharedSecret(b.PublicKey())
		if err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
		sb, err := b.SharedSecret(a.PublicKey())
		if err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
		if !bytes.Equal(sa, sb) {
			t.Fatalf("group %d: secrets differ", g)
		}
		wantPub := map[uint16]int{message.DH_MODP2048: 256, message.DH_ECP256: 64, message.DH_ECP384: 96, message.DH_ECP521: 132, message.DH_CURVE25519: 32}[g]
		wantSec := map[uint16]int{message.DH_MODP2048: 256, message.DH_ECP256: 32, message.DH_ECP384: 48, message.DH_ECP521: 66, message.DH_CURVE25519: 32}[g]
		if len(a.PublicKey()) != wantPub || len(sa) != wantSec {
			t.Fatalf("group %d: public %d bytes, secret %d bytes; want %d, %d", g, len(a.PublicKey()), len(sa), wantPub, wantSec)
		}
	}
}

func TestKeyExchangeRejects(t *testing.T) {
	pm1 := new(big.Int).Sub(modp2048, big.NewInt(1)).FillBytes(make([]byte, 256))
	one := make([]byte, 256)
	one[255] = 1
	offCurve := make([]byte, 64)
	offCurve[31], offCurve[63] = 1, 1
	tests := []struct {
		name  string
		group uint16
		peer  []byte
	}{
		{"MODP zero", message.DH_MODP2048, make([]byte, 256)},
		{"MODP one", message.DH_MODP2048, one},
		{"MODP p-1", message.DH_MODP2048, pm1},
		{"MODP p", message.DH_MODP2048, modp2048.Bytes()},
		{"MODP short", message.DH_MODP2048, make([]byte, 255)},
		{"P-256 off curve", message.DH_ECP256, offCurve},
		{"P-256 infinity", message.DH_ECP256, make([]byte, 64)},
		{"P-256 short", message.DH_ECP256, offCurve[:63]},
		{"P-384 wrong size", message.DH_ECP384, offCurve},
		{"X25519 zero point", message.DH_CURVE25519, make([]byte, 32)},
		{"X25519 order-1 point", message.DH_CURVE25519, append([]byte{1}, make([]byte, 31)...)},
		{"X25519 short", message.DH_CURVE25519, make([]byte, 31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := GenerateKey(tt.group, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.SharedSecret(tt.peer); !errors.Is(err, ErrPublicKey) {
				t.Fatalf("got %v, want ErrPublicKey", err)
			}
		})
	}
	if _, err := GenerateKey(message.DH_MODP1024, rand.Reader); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("MODP-1024: %v", err)
	}
}

// TestMODP2048Prime guards the transcribed RFC 3526 constant: it must be a
// 2048-bit safe prime, which a single wrong digit would break.
func TestMODP2048Prime(t *testing.T) {
	if modp2048.BitLen() != 2048 || !modp2048.ProbablyPrime(20) {
		t.Fatal("modulus is not a 2048-bit prime")
	}
	q := new(big.Int).Rsh(modp2048, 1)
	if !q.ProbablyPrime(20) {
		t.Fatal("(p-1)/2 is not prime")
	}
}

func BenchmarkKeyExchange(b *testing.B) {
	for _, g := range SupportedGroups {
		b.Run(map[uint16]string{14: "modp2048", 19: "ecp256", 20: "ecp384", 21: "ecp521", 31: "x25519"}[g], func(b *testing.B) {
			peer, _ := GenerateKey(g, rand.Reader)
			for b.Loop() {
				k, err := GenerateKey(g, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.SharedSecret(peer.PublicKey()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
