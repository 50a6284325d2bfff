package ikecrypto

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"

	"github.com/espy-dpi/espy/ike/message"
)

// KeyExchange is one side of a Diffie-Hellman exchange in a given group.
type KeyExchange interface {
	// Group returns the transform ID of the group.
	Group() uint16
	// PublicKey returns the value sent in the KE payload.
	PublicKey() []byte
	// SharedSecret validates the peer's KE data and returns g^ir in the
	// representation RFC 7296 and RFC 5903/8031 prescribe.
	SharedSecret(peer []byte) ([]byte, error)
}

// SupportedGroups lists the groups GenerateKey accepts, in the order an
// initiator proposes them by default.
var SupportedGroups = []uint16{message.DH_CURVE25519, message.DH_ECP256, message.DH_ECP384, message.DH_ECP521, message.DH_MODP2048}

// GenerateKey makes a fresh private key in group and returns its exchange.
func GenerateKey(group uint16, rand io.Reader) (KeyExchange, error) {
	var curve ecdh.Curve
	switch group {
	case message.DH_MODP2048:
		return generateMODP(group, modp2048, rand)
	case message.DH_ECP256:
		curve = ecdh.P256()
	case message.DH_ECP384:
		curve = ecdh.P384()
	case message.DH_ECP521:
		curve = ecdh.P521()
	case message.DH_CURVE25519:
		curve = ecdh.X25519()
	default:
		return nil, fmt.Errorf("ikecrypto: key exchange group %d: %w", group, ErrUnsupported)
	}
	priv, err := curve.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: group %d key: %w", group, err)
	}
	return &ecKex{group: group, priv: priv}, nil
}

type ecKex struct {
	group uint16
	priv  *ecdh.PrivateKey
}

func (k *ecKex) Group() uint16 { return k.group }

// PublicKey returns x | y for the NIST curves (RFC 5903 section 7: no 0x04
// point-format byte) and the 32-byte u-coordinate for Curve25519.
func (k *ecKex) PublicKey() []byte {
	pub := k.priv.PublicKey().Bytes()
	if k.group == message.DH_CURVE25519 {
		return pub
	}
	return pub[1:]
}

func (k *ecKex) SharedSecret(peer []byte) ([]byte, error) {
	raw := peer
	if k.group != message.DH_CURVE25519 {
		raw = make([]byte, 1+len(peer))
		raw[0] = 4
		copy(raw[1:], peer)
	}
	// NewPublicKey checks length and, for the NIST curves, that the point
	// is on the curve and not the point at infinity.
	pub, err := k.priv.Curve().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: group %d peer value: %v: %w", k.group, err, ErrPublicKey)
	}
	// For X25519 ECDH fails on low-order points, which give an all-zero
	// secret (RFC 8031 section 2.3 requires rejecting it). For the NIST
	// curves the result is the x-coordinate (RFC 5903 section 7).
	s, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: group %d: %v: %w", k.group, err, ErrPublicKey)
	}
	if subtle.ConstantTimeCompare(s, make([]byte, len(s))) == 1 {
		return nil, fmt.Errorf("ikecrypto: group %d: all-zero shared secret: %w", k.group, ErrPublicKey)
	}
	return s, nil
}

// modp2048 is the 2048-bit MODP group of RFC 3526 section 3 (generator 2).
var modp2048, _ = new(big.Int).SetString(
	"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
		"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
		"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
		"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
		"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
		"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
		"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
		"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
		"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)

// modpExponentBits is the private exponent size. RFC 3526 section 8 puts
// the strength of the 2048-bit group near 110 bits; an exponent of twice
// that suffices, and 256 bits keeps the modular exponentiation cheap.
const modpExponentBits = 256

type modpKex struct {
	group uint16
	p     *big.Int
	x     *big.Int
	pub   []byte
}

func generateMODP(group uint16, p *big.Int, rand io.Reader) (*modpKex, error) {
	buf := make([]byte, modpExponentBits/8)
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, fmt.Errorf("ikecrypto: group %d key: %w", group, err)
	}
	buf[0] |= 0x80 // full-size exponent
	x := new(big.Int).SetBytes(buf)
	y := new(big.Int).Exp(big.NewInt(2), x, p)
	size := (p.BitLen() + 7) / 8
	return &modpKex{group: group, p: p, x: x, pub: y.FillBytes(make([]byte, size))}, nil
}

func (k *modpKex) Group() uint16     { return k.group }
func (k *modpKex) PublicKey() []byte { return k.pub }

// SharedSecret requires the peer value to be exactly the modulus length and
// 1 < y < p-1 (RFC 7296 section 3.4; y = 1 or p-1 would leak a secret of
// order 2). The result is padded to the modulus length.
func (k *modpKex) SharedSecret(peer []byte) ([]byte, error) {
	size := (k.p.BitLen() + 7) / 8
	if len(peer) != size {
		return nil, fmt.Errorf("ikecrypto: group %d peer value of %d bytes, want %d: %w", k.group, len(peer), size, ErrPublicKey)
	}
	y := new(big.Int).SetBytes(peer)
	pm1 := new(big.Int).Sub(k.p, big.NewInt(1))
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
		return nil, fmt.Errorf("ikecrypto: group %d peer value out of range: %w", k.group, ErrPublicKey)
	}
	s := new(big.Int).Exp(y, k.x, k.p)
	return s.FillBytes(make([]byte, size)), nil
}
