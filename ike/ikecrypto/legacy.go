package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/espy-dpi/espy/ike/message"
)

// The legacy signature AUTH methods predate RFC 7427: the method number
// alone fixes the algorithm, and the AUTH data is the bare signature.
//
//   - 1, RSA Digital Signature (RFC 7296 3.8): RSASSA-PKCS1-v1_5 with
//     SHA-1, the hash every implementation uses (strongSwan, libreswan)
//     since RFC 7296 names none.
//   - 9, 10, 11 (RFC 4754): ECDSA with SHA-256 on P-256, SHA-384 on P-384,
//     SHA-512 on P-521; the signature is r | s, each left-padded to the
//     size of the curve's order, not DER.

// LegacyMethod returns the legacy AUTH method for a public key: 1 for
// RSA, 9–11 for ECDSA on P-256, P-384 and P-521.
func LegacyMethod(pub crypto.PublicKey) (message.AuthMethod, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return message.AuthRSASig, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return message.AuthECDSA256, nil
		case elliptic.P384():
			return message.AuthECDSA384, nil
		case elliptic.P521():
			return message.AuthECDSA521, nil
		}
	}
	return 0, fmt.Errorf("ikecrypto: no legacy AUTH method for a %T key: %w", pub, ErrUnsupported)
}

// IsLegacyMethod reports whether m is one of the legacy signature methods
// this package implements.
func IsLegacyMethod(m message.AuthMethod) bool {
	_, _, ok := legacyParams(m)
	return ok
}

// legacyParams returns the hash and, for ECDSA, the curve of method m.
func legacyParams(m message.AuthMethod) (crypto.Hash, elliptic.Curve, bool) {
	switch m {
	case message.AuthRSASig:
		return crypto.SHA1, nil, true
	case message.AuthECDSA256:
		return crypto.SHA256, elliptic.P256(), true
	case message.AuthECDSA384:
		return crypto.SHA384, elliptic.P384(), true
	case message.AuthECDSA521:
		return crypto.SHA512, elliptic.P521(), true
	}
	return 0, nil, false
}

// ecdsaSig is the DER form of an ECDSA signature (RFC 3279 2.2.3).
type ecdsaSig struct{ R, S *big.Int }

// SignLegacy returns the AUTH data of legacy method m over signedOctets.
func SignLegacy(signer crypto.Signer, m message.AuthMethod, signedOctets []byte, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	h, curve, ok := legacyParams(m)
	if !ok {
		return nil, fmt.Errorf("ikecrypto: AUTH method %d: %w", m, ErrUnsupported)
	}
	if err := legacyFits(signer.Public(), m, curve); err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(signedOctets)
	sig, err := signer.Sign(rnd, d.Sum(nil), h)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: sign AUTH method %d: %w", m, err)
	}
	if curve == nil {
		return sig, nil
	}
	var rs ecdsaSig
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return nil, fmt.Errorf("ikecrypto: signer returned a malformed ECDSA signature")
	}
	n := (curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	if rs.R.BitLen() > 8*n || rs.S.BitLen() > 8*n {
		return nil, fmt.Errorf("ikecrypto: signer returned a malformed ECDSA signature")
	}
	rs.R.FillBytes(out[:n])
	rs.S.FillBytes(out[n:])
	return out, nil
}

// VerifyLegacy checks the AUTH data of legacy method m against pub and
// signedOctets. A key that does not fit the method (RSA for ECDSA, another
// curve than the method's) and a signature of the wrong size are refused
// with ErrSignature.
func VerifyLegacy(pub crypto.PublicKey, m message.AuthMethod, data, signedOctets []byte) error {
	h, curve, ok := legacyParams(m)
	if !ok {
		return fmt.Errorf("ikecrypto: AUTH method %d: %w", m, ErrUnsupported)
	}
	if err := legacyFits(pub, m, curve); err != nil {
		return err
	}
	d := h.New()
	d.Write(signedOctets)
	digest := d.Sum(nil)
	if curve == nil {
		if rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), h, digest, data) != nil {
			return fmt.Errorf("ikecrypto: AUTH method %d: %w", m, ErrSignature)
		}
		return nil
	}
	n := (curve.Params().BitSize + 7) / 8
	if len(data) != 2*n {
		return fmt.Errorf("ikecrypto: AUTH method %d: signature of %d bytes, want %d: %w", m, len(data), 2*n, ErrSignature)
	}
	der, err := asn1.Marshal(ecdsaSig{R: new(big.Int).SetBytes(data[:n]), S: new(big.Int).SetBytes(data[n:])})
	if err != nil || !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest, der) {
		return fmt.Errorf("ikecrypto: AUTH method %d: %w", m, ErrSignature)
	}
	return nil
}

// legacyFits checks that pub is of the kind, and for ECDSA on the curve,
// that method m prescribes.
func legacyFits(pub crypto.PublicKey, m message.AuthMethod, curve elliptic.Curve) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if curve == nil {
			return nil
		}
	case *ecdsa.PublicKey:
		if curve != nil && k.Curve == curve {
			return nil
		}
	}
	return fmt.Errorf("ikecrypto: AUTH method %d with a %s: %w", m, keyName(pub), ErrSignature)
}

// keyName describes a public key for errors.
func keyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d key", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name + " key"
	}
	return fmt.Sprintf("%T key", pub)
}
