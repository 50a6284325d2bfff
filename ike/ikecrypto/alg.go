package ikecrypto

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/espy-dpi/espy/ike/message"
)

// Encr describes an encryption transform (Transform Type 1) as used in
// IKE's SK payload and in ESP.
type Encr struct {
	ID      uint16
	Name    string
	KeyBits []int // allowed Key Length attribute values; nil: no attribute
	SaltLen int   // bytes of nonce/salt taken from the keying material after the key
	IVLen   int   // explicit IV in each packet
	ICVLen  int   // AEAD tag length; 0 for non-AEAD
	AEAD    bool  // integrity built in: no INTEG transform
	IKE     bool  // usable for the IKE SA (not ENCR_NULL*)
	NullESP bool  // ESP payload travels in clear (ENCR_NULL, NULL_AUTH_AES_GMAC)
}

// KeyLen returns the keying material the algorithm takes for keyBits.
func (e *Encr) KeyLen(keyBits int) int { return keyBits/8 + e.SaltLen }

var aesBits = []int{128, 192, 256}

var encrs = map[uint16]*Encr{
	message.ENCR_NULL:       {ID: message.ENCR_NULL, Name: "null", NullESP: true},
	message.ENCR_AES_CBC:    {ID: message.ENCR_AES_CBC, Name: "aes-cbc", KeyBits: aesBits, IVLen: 16, IKE: true},
	message.ENCR_AES_CTR:    {ID: message.ENCR_AES_CTR, Name: "aes-ctr", KeyBits: aesBits, SaltLen: 4, IVLen: 8, IKE: true},
	message.ENCR_AES_GCM_8:  {ID: message.ENCR_AES_GCM_8, Name: "aes-gcm-8", KeyBits: aesBits, SaltLen: 4, IVLen: 8, ICVLen: 8, AEAD: true, IKE: true},
	message.ENCR_AES_GCM_12: {ID: message.ENCR_AES_GCM_12, Name: "aes-gcm-12", KeyBits: aesBits, SaltLen: 4, IVLen: 8, ICVLen: 12, AEAD: true, IKE: true},
	message.ENCR_AES_GCM_16: {ID: message.ENCR_AES_GCM_16, Name: "aes-gcm-16", KeyBits: aesBits, SaltLen: 4, IVLen: 8, ICVLen: 16, AEAD: true, IKE: true},
	// AES-CCM (RFC 4309) for ESP only: no CCM in the standard library, and
	// ESP needs only its lengths here. The salt is 3 bytes.
	message.ENCR_AES_CCM_8:          {ID: message.ENCR_AES_CCM_8, Name: "aes-ccm-8", KeyBits: aesBits, SaltLen: 3, IVLen: 8, ICVLen: 8, AEAD: true},
	message.ENCR_AES_CCM_12:         {ID: message.ENCR_AES_CCM_12, Name: "aes-ccm-12", KeyBits: aesBits, SaltLen: 3, IVLen: 8, ICVLen: 12, AEAD: true},
	message.ENCR_AES_CCM_16:         {ID: message.ENCR_AES_CCM_16, Name: "aes-ccm-16", KeyBits: aesBits, SaltLen: 3, IVLen: 8, ICVLen: 16, AEAD: true},
	message.ENCR_NULL_AUTH_AES_GMAC: {ID: message.ENCR_NULL_AUTH_AES_GMAC, Name: "null-aes-gmac", KeyBits: aesBits, SaltLen: 4, IVLen: 8, ICVLen: 16, AEAD: true, NullESP: true},
	message.ENCR_CHACHA20_POLY1305:  {ID: message.ENCR_CHACHA20_POLY1305, Name: "chacha20-poly1305", SaltLen: 4, IVLen: 8, ICVLen: 16, AEAD: true, IKE: true},
}

// LookupEncr returns the description of encryption transform id.
func LookupEncr(id uint16) (*Encr, error) {
	if e, ok := encrs[id]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("ikecrypto: encryption transform %d: %w", id, ErrUnsupported)
}

// CheckKeyBits validates the Key Length attribute for e (0 = absent). It
// returns the effective key size in bits.
func (e *Encr) CheckKeyBits(bits int) (int, error) {
	if e.ID == message.ENCR_CHACHA20_POLY1305 {
		if bits != 0 && bits != 256 {
			return 0, fmt.Errorf("ikecrypto: %s key length %d: %w", e.Name, bits, ErrKeyLength)
		}
		return 256, nil
	}
	if e.KeyBits == nil {
		if bits != 0 {
			return 0, fmt.Errorf("ikecrypto: %s takes no key length: %w", e.Name, ErrKeyLength)
		}
		return 0, nil
	}
	for _, k := range e.KeyBits {
		if k == bits {
			return bits, nil
		}
	}
	// RFC 7296 3.3.5: AES transforms require the attribute.
	return 0, fmt.Errorf("ikecrypto: %s key length %d: %w", e.Name, bits, ErrKeyLength)
}

// Integ describes an integrity transform (Transform Type 3).
type Integ struct {
	ID     uint16
	Name   string
	KeyLen int
	ICVLen int
	// Hash is the HMAC hash. Nil for the AES-based MACs, which espy only
	// negotiates for ESP (the flow cache needs their lengths, not an
	// implementation); they cannot protect an IKE SA.
	Hash func() hash.Hash
}

var integs = map[uint16]*Integ{
	message.AUTH_HMAC_SHA1_96:      {ID: message.AUTH_HMAC_SHA1_96, Name: "hmac-sha1-96", KeyLen: 20, ICVLen: 12, Hash: sha1.New},
	message.AUTH_HMAC_SHA2_256_128: {ID: message.AUTH_HMAC_SHA2_256_128, Name: "hmac-sha2-256-128", KeyLen: 32, ICVLen: 16, Hash: sha256.New},
	message.AUTH_HMAC_SHA2_384_192: {ID: message.AUTH_HMAC_SHA2_384_192, Name: "hmac-sha2-384-192", KeyLen: 48, ICVLen: 24, Hash: sha512.New384},
	message.AUTH_HMAC_SHA2_512_256: {ID: message.AUTH_HMAC_SHA2_512_256, Name: "hmac-sha2-512-256", KeyLen: 64, ICVLen: 32, Hash: sha512.New},
	// RFC 3566 and RFC 4494: 128-bit key, 96-bit ICV.
	message.AUTH_AES_XCBC_96: {ID: message.AUTH_AES_XCBC_96, Name: "aes-xcbc-96", KeyLen: 16, ICVLen: 12},
	message.AUTH_AES_CMAC_96: {ID: message.AUTH_AES_CMAC_96, Name: "aes-cmac-96", KeyLen: 16, ICVLen: 12},
}

// LookupInteg returns the description of integrity transform id.
func LookupInteg(id uint16) (*Integ, error) {
	if i, ok := integs[id]; ok {
		return i, nil
	}
	return nil, fmt.Errorf("ikecrypto: integrity transform %d: %w", id, ErrUnsupported)
}

// Weak reports whether transform (t, id) is forbidden by the default
// policy: MD5 anywhere, DES, and MODP groups below 2048 bits (RFC 8247).
// ENCR_NULL without integrity is a property of a whole proposal and is
// checked by the caller.
func Weak(t message.TransformType, id uint16) bool {
	switch t {
	case message.TransformENCR:
		return id == message.ENCR_DES || id == message.ENCR_3DES
	case message.TransformPRF:
		return id == message.PRF_HMAC_MD5
	case message.TransformINTEG:
		return id == message.AUTH_HMAC_MD5_96
	case message.TransformDH:
		return id == message.DH_MODP768 || id == message.DH_MODP1024 || id == message.DH_MODP1536
	}
	return false
}
