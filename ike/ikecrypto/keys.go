package ikecrypto

import (
	"encoding/binary"
	"fmt"
)

// IKEKeys are the seven secrets of an IKE SA (RFC 7296 section 2.14).
type IKEKeys struct {
	SKd        []byte // derives Child SA keys
	SKai, SKar []byte // integrity, initiator->responder and back (empty with AEAD)
	SKei, SKer []byte // encryption (key | salt for AEAD and CTR)
	SKpi, SKpr []byte // used in the AUTH payload computation
}

// SKEYSEED returns prf(Ni | Nr, g^ir). For the HMAC PRFs the whole of
// Ni | Nr is the key (RFC 7296 section 2.14).
func SKEYSEED(p *PRF, ni, nr, gir []byte) []byte {
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return p.Sum(key, gir)
}

// DeriveIKEKeys computes SKEYSEED and splits
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into the IKE SA keys. encrKeyLen
// and integKeyLen are in bytes (integKeyLen 0 for AEAD).
func DeriveIKEKeys(p *PRF, ni, nr, gir []byte, spii, spir uint64, encrKeyLen, integKeyLen int) (*IKEKeys, error) {
	return DeriveIKEKeysFromSeed(p, SKEYSEED(p, ni, nr, gir), ni, nr, spii, spir, encrKeyLen, integKeyLen)
}

// DeriveIKEKeysFromSeed splits prf+(skeyseed, Ni | Nr | SPIi | SPIr) into
// the IKE SA keys; with RekeySKEYSEED it derives a rekeyed IKE SA's keys.
func DeriveIKEKeysFromSeed(p *PRF, skeyseed, ni, nr []byte, spii, spir uint64, encrKeyLen, integKeyLen int) (*IKEKeys, error) {
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = binary.BigEndian.AppendUint64(seed, spii)
	seed = binary.BigEndian.AppendUint64(seed, spir)
	ps := p.Size()
	km, err := p.Plus(skeyseed, seed, 3*ps+2*integKeyLen+2*encrKeyLen)
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: IKE SA keys: %w", err)
	}
	take := func(n int) []byte { b := km[:n:n]; km = km[n:]; return b }
	k := &IKEKeys{SKd: take(ps)}
	k.SKai, k.SKar = take(integKeyLen), take(integKeyLen)
	k.SKei, k.SKer = take(encrKeyLen), take(encrKeyLen)
	k.SKpi, k.SKpr = take(ps), take(ps)
	return k, nil
}

// ChildKeys are the keys of one Child SA, per direction (RFC 7296 section
// 2.17).
type ChildKeys struct {
	EncrI, IntegI []byte // initiator -> responder
	EncrR, IntegR []byte // responder -> initiator
}

// DeriveChildKeys computes KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) and
// splits it: all keys for initiator-to-responder traffic first, encryption
// before integrity within a direction. gir is nil without PFS.
func DeriveChildKeys(p *PRF, skd, gir, ni, nr []byte, encrKeyLen, integKeyLen int) (*ChildKeys, error) {
	seed := make([]byte, 0, len(gir)+len(ni)+len(nr))
	seed = append(append(append(seed, gir...), ni...), nr...)
	km, err := p.Plus(skd, seed, 2*(encrKeyLen+integKeyLen))
	if err != nil {
		return nil, fmt.Errorf("ikecrypto: Child SA keys: %w", err)
	}
	take := func(n int) []byte { b := km[:n:n]; km = km[n:]; return b }
	c := &ChildKeys{}
	c.EncrI, c.IntegI = take(encrKeyLen), take(integKeyLen)
	c.EncrR, c.IntegR = take(encrKeyLen), take(integKeyLen)
	return c, nil
}

// RekeySKEYSEED returns prf(SK_d (old), g^ir (new) | Ni | Nr), the SKEYSEED
// of an IKE SA rekeyed with CREATE_CHILD_SA (RFC 7296 section 2.18).
func RekeySKEYSEED(p *PRF, skdOld, gir, ni, nr []byte) []byte {
	return p.Sum(skdOld, gir, ni, nr)
}
