package ikecrypto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
)

// ErrSignature means a digital-signature AUTH payload did not verify or
// names an algorithm that does not fit the key.
var ErrSignature = errors.New("signature verification failed")

// SignatureScheme is one signature algorithm of the Digital Signature
// authentication method (RFC 7427), named by its ASN.1 AlgorithmIdentifier.
type SignatureScheme struct {
	Name  string
	Hash  crypto.Hash // 0 for Ed25519, which signs the octets themselves (RFC 8420)
	PSS   bool
	algID []byte // DER AlgorithmIdentifier
	key   keyKind
}

type keyKind uint8

const (
	keyRSA keyKind = iota
	keyECDSA
	keyEd25519
)

var (
	oidRSASSAPSS = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA256    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// algID returns the DER AlgorithmIdentifier for oid; withNull adds the NULL
// parameters the RSA PKCS#1 v1.5 identifiers carry.
func algID(oid asn1.ObjectIdentifier, withNull bool) []byte {
	a := pkix.AlgorithmIdentifier{Algorithm: oid}
	if withNull {
		a.Parameters = asn1.NullRawValue
	}
	b, err := asn1.Marshal(a)
	if err != nil {
		panic(err)
	}
	return b
}

// pssAlgID returns RSASSA-PSS with hash h, MGF1 over h and a salt as long
// as the hash (RFC 4055 parameters; RFC 7427 appendix A.4.3 shape).
func pssAlgID(hashOID asn1.ObjectIdentifier, saltLen int) []byte {
	type pssParams struct {
		Hash       pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
		MGF        pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
		SaltLength int                      `asn1:"explicit,tag:2"`
	}
	h := pkix.AlgorithmIdentifier{Algorithm: hashOID, Parameters: asn1.NullRawValue}
	hb, _ := asn1.Marshal(h)
	p, err := asn1.Marshal(pssParams{Hash: h, MGF: pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: hb}}, SaltLength: saltLen})
	if err != nil {
		panic(err)
	}
	b, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: p}})
	if err != nil {
		panic(err)
	}
	return b
}

// Signature schemes (RFC 7427 appendix A, RFC 8420 for Ed25519).
var (
	RSASHA256   = &SignatureScheme{Name: "sha256WithRSAEncryption", Hash: crypto.SHA256, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true), key: keyRSA}
	RSASHA384   = &SignatureScheme{Name: "sha384WithRSAEncryption", Hash: crypto.SHA384, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, true), key: keyRSA}
	RSASHA512   = &SignatureScheme{Name: "sha512WithRSAEncryption", Hash: crypto.SHA512, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, true), key: keyRSA}
	RSAPSS256   = &SignatureScheme{Name: "RSASSA-PSS-SHA256", Hash: crypto.SHA256, PSS: true, algID: pssAlgID(oidSHA256, 32), key: keyRSA}
	RSAPSS384   = &SignatureScheme{Name: "RSASSA-PSS-SHA384", Hash: crypto.SHA384, PSS: true, algID: pssAlgID(oidSHA384, 48), key: keyRSA}
	RSAPSS512   = &SignatureScheme{Name: "RSASSA-PSS-SHA512", Hash: crypto.SHA512, PSS: true, algID: pssAlgID(oidSHA512, 64), key: keyRSA}
	ECDSASHA256 = &SignatureScheme{Name: "ecdsa-with-SHA256", Hash: crypto.SHA256, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false), key: keyECDSA}
	ECDSASHA384 = &SignatureScheme{Name: "ecdsa-with-SHA384", Hash: crypto.SHA384, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false), key: keyECDSA}
	ECDSASHA512 = &SignatureScheme{Name: "ecdsa-with-SHA512", Hash: crypto.SHA512, algID: algID(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false), key: keyECDSA}
	Ed25519     = &SignatureScheme{Name: "Ed25519", algID: algID(asn1.ObjectIdentifier{1, 3, 101, 112}, false), key: keyEd25519}
)

var schemes = []*SignatureScheme{RSASHA256, RSASHA384, RSASHA512, RSAPSS256, RSAPSS384, RSAPSS512, ECDSASHA256, ECDSASHA384, ECDSASHA512, Ed25519}

// SignatureHashAlgorithms are the RFC 7427 hash algorithm IDs espy can
// verify, for the SIGNATURE_HASH_ALGORITHMS notification: SHA2-256,
// SHA2-384, SHA2-512 and Identity (Ed25519).
var SignatureHashAlgorithms = []uint16{2, 3, 4, 5}

// DefaultScheme returns the scheme espy signs with for key: PKCS#1 v1.5
// with SHA-256 for RSA (the widest supported), ECDSA with the curve's hash,
// Ed25519.
func DefaultScheme(pub crypto.PublicKey) (*SignatureScheme, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return RSASHA256, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return ECDSASHA256, nil
		case 384:
			return ECDSASHA384, nil
		case 521:
			return ECDSASHA512, nil
		}
	case ed25519.PublicKey:
		return Ed25519, nil
	}
	return nil, fmt.Errorf("ikecrypto: signing key %T: %w", pub, ErrUnsupported)
}

// SignAuth returns the AUTH data of the Digital Signature method:
// length of the AlgorithmIdentifier | AlgorithmIdentifier | signature over
// signedOctets.
func SignAuth(signer crypto.Signer, s *SignatureScheme, signedOctets []byte, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if !s.fits(signer.Public()) {
		return nil, fmt.Errorf("ikecrypto: %s with a %T key: %w", s.Name, signer.Public(), ErrUnsupported)
	}
	var digest []byte
	var opts crypto.SignerOpts = s.Hash
	if s.key == keyEd25519 {
		digest, opts = signedOctets, crypto.Hash(0)
	} else {
		h := s.Hash.New()
		h.Write(signedOctets)
		digest = h.Sum(nil)
		if s.PSS {
			opts = &rsa.PSSOptions{SaltLength: s.Hash.Size(), Hash: s.Hash}
		}
	}
	sig, err := signer.Sign(rnd, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: sign AUTH: %w", err)
	}
	out := make([]byte, 0, 1+len(s.algID)+len(sig))
	out = append(out, byte(len(s.algID)))
	out = append(out, s.algID...)
	return append(out, sig...), nil
}

func (s *SignatureScheme) fits(pub crypto.PublicKey) bool {
	switch pub.(type) {
	case *rsa.PublicKey:
		return s.key == keyRSA
	case *ecdsa.PublicKey:
		return s.key == keyECDSA
	case ed25519.PublicKey:
		return s.key == keyEd25519
	}
	return false
}

// VerifyAuth checks Digital Signature AUTH data against pub and
// signedOctets and returns the scheme that was used. Only the exact
// AlgorithmIdentifier encodings of the schemes above are accepted.
func VerifyAuth(pub crypto.PublicKey, data, signedOctets []byte) (*SignatureScheme, error) {
	if len(data) < 1 || int(data[0])+1 > len(data) {
		return nil, fmt.Errorf("ikecrypto: AUTH data of %d bytes: %w", len(data), ErrSignature)
	}
	id, sig := data[1:1+int(data[0])], data[1+int(data[0]):]
	var s *SignatureScheme
	for _, c := range schemes {
		if bytes.Equal(c.algID, id) {
			s = c
			break
		}
	}
	if s == nil {
		return nil, fmt.Errorf("ikecrypto: AUTH AlgorithmIdentifier %x: %w", id, ErrUnsupported)
	}
	if !s.fits(pub) {
		return nil, fmt.Errorf("ikecrypto: %s with a %T key: %w", s.Name, pub, ErrSignature)
	}
	var ok bool
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, signedOctets, sig)
	case *ecdsa.PublicKey:
		h := s.Hash.New()
		h.Write(signedOctets)
		ok = ecdsa.VerifyASN1(k, h.Sum(nil), sig)
	case *rsa.PublicKey:
		h := s.Hash.New()
		h.Write(signedOctets)
		if s.PSS {
			ok = rsa.VerifyPSS(k, s.Hash, h.Sum(nil), sig, &rsa.PSSOptions{SaltLength: s.Hash.Size(), Hash: s.Hash}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(k, s.Hash, h.Sum(nil), sig) == nil
		}
	}
	if !ok {
		return nil, fmt.Errorf("ikecrypto: %s: %w", s.Name, ErrSignature)
	}
	return s, nil
}
