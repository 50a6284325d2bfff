package message

import "strconv"

// TransformType is the type of a transform substructure (RFC 7296 section
// 3.3.2, IANA "Transform Type Values").
type TransformType uint8

// Transform types.
const (
	TransformENCR  TransformType = 1 // encryption algorithm
	TransformPRF   TransformType = 2 // pseudorandom function
	TransformINTEG TransformType = 3 // integrity algorithm
	TransformDH    TransformType = 4 // key exchange method (Diffie-Hellman group)
	TransformESN   TransformType = 5 // extended sequence numbers
)

func (t TransformType) String() string {
	switch t {
	case TransformENCR:
		return "ENCR"
	case TransformPRF:
		return "PRF"
	case TransformINTEG:
		return "INTEG"
	case TransformDH:
		return "DH"
	case TransformESN:
		return "ESN"
	}
	return "TRANSFORM(" + strconv.Itoa(int(t)) + ")"
}

// Encryption algorithm transform IDs (IANA "Transform Type 1").
const (
	ENCR_DES                uint16 = 2
	ENCR_3DES               uint16 = 3
	ENCR_NULL               uint16 = 11
	ENCR_AES_CBC            uint16 = 12
	ENCR_AES_CTR            uint16 = 13
	ENCR_AES_CCM_8          uint16 = 14
	ENCR_AES_CCM_12         uint16 = 15
	ENCR_AES_CCM_16         uint16 = 16
	ENCR_AES_GCM_8          uint16 = 18
	ENCR_AES_GCM_12         uint16 = 19
	ENCR_AES_GCM_16         uint16 = 20
	ENCR_NULL_AUTH_AES_GMAC uint16 = 21
	ENCR_CHACHA20_POLY1305  uint16 = 28
)

// Pseudorandom function transform IDs (IANA "Transform Type 2").
const (
	PRF_HMAC_MD5      uint16 = 1
	PRF_HMAC_SHA1     uint16 = 2
	PRF_AES128_XCBC   uint16 = 4
	PRF_HMAC_SHA2_256 uint16 = 5
	PRF_HMAC_SHA2_384 uint16 = 6
	PRF_HMAC_SHA2_512 uint16 = 7
	PRF_AES128_CMAC   uint16 = 8
)

// Integrity algorithm transform IDs (IANA "Transform Type 3").
const (
	AUTH_NONE              uint16 = 0
	AUTH_HMAC_MD5_96       uint16 = 1
	AUTH_HMAC_SHA1_96      uint16 = 2
	AUTH_AES_XCBC_96       uint16 = 5
	AUTH_AES_CMAC_96       uint16 = 8
	AUTH_HMAC_SHA2_256_128 uint16 = 12
	AUTH_HMAC_SHA2_384_192 uint16 = 13
	AUTH_HMAC_SHA2_512_256 uint16 = 14
)

// Key exchange method transform IDs (IANA "Transform Type 4").
const (
	DH_NONE       uint16 = 0
	DH_MODP768    uint16 = 1
	DH_MODP1024   uint16 = 2
	DH_MODP1536   uint16 = 5
	DH_MODP2048   uint16 = 14
	DH_MODP3072   uint16 = 15
	DH_MODP4096   uint16 = 16
	DH_ECP256     uint16 = 19
	DH_ECP384     uint16 = 20
	DH_ECP521     uint16 = 21
	DH_CURVE25519 uint16 = 31
	DH_CURVE448   uint16 = 32
)

// Extended sequence number transform IDs (IANA "Transform Type 5").
const (
	ESN_NO  uint16 = 0
	ESN_YES uint16 = 1
)

// AttrKeyLength is the Key Length transform attribute (TV format, bits).
const AttrKeyLength uint16 = 14
