package xfrm

import (
	"fmt"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// integNames are the kernel names and truncation lengths (bits) of the
// IKEv2 integrity transforms.
var integNames = map[uint16]struct {
	name string
	bits int
}{
	message.AUTH_HMAC_MD5_96:       {"hmac(md5)", 96},
	message.AUTH_HMAC_SHA1_96:      {"hmac(sha1)", 96},
	message.AUTH_AES_XCBC_96:       {"xcbc(aes)", 96},
	message.AUTH_AES_CMAC_96:       {"cmac(aes)", 96},
	message.AUTH_HMAC_SHA2_256_128: {"hmac(sha256)", 128},
	message.AUTH_HMAC_SHA2_384_192: {"hmac(sha384)", 192},
	message.AUTH_HMAC_SHA2_512_256: {"hmac(sha512)", 256},
}

// aeadNames are the kernel names and ICV lengths (bits) of the combined
// mode transforms, whose keys end in a salt (RFC 4106, 4309, 4543, 7634).
var aeadNames = map[uint16]struct {
	name string
	bits int
}{
	message.ENCR_AES_GCM_8:          {"rfc4106(gcm(aes))", 64},
	message.ENCR_AES_GCM_12:         {"rfc4106(gcm(aes))", 96},
	message.ENCR_AES_GCM_16:         {"rfc4106(gcm(aes))", 128},
	message.ENCR_AES_CCM_8:          {"rfc4309(ccm(aes))", 64},
	message.ENCR_AES_CCM_12:         {"rfc4309(ccm(aes))", 96},
	message.ENCR_AES_CCM_16:         {"rfc4309(ccm(aes))", 128},
	message.ENCR_NULL_AUTH_AES_GMAC: {"rfc4543(gcm(aes))", 128},
	message.ENCR_CHACHA20_POLY1305:  {"rfc7539esp(chacha20,poly1305)", 128},
}

// cryptNames are the kernel names of the other encryption transforms.
var cryptNames = map[uint16]string{
	message.ENCR_NULL:    "ecb(cipher_null)",
	message.ENCR_AES_CBC: "cbc(aes)",
	message.ENCR_AES_CTR: "rfc3686(ctr(aes))", // key ends in the 4-byte nonce
	message.ENCR_3DES:    "cbc(des3_ede)",
}

// algorithms returns the kernel algorithms of an SA direction: an AEAD,
// or encryption and integrity.
func algorithms(k *ike.KeyedSA) (crypt, auth, aead *Algorithm, err error) {
	if a, ok := aeadNames[k.EncrID]; ok {
		if a.bits != 8*k.ICVLen {
			return nil, nil, nil, fmt.Errorf("%w: %s with a %d-byte ICV", ErrAlgorithm, a.name, k.ICVLen)
		}
		return nil, nil, &Algorithm{Name: a.name, Key: k.EncrKey, Bits: a.bits}, nil
	}
	c, ok := cryptNames[k.EncrID]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: encryption transform %d", ErrAlgorithm, k.EncrID)
	}
	i, ok := integNames[k.IntegID]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: integrity transform %d with %s", ErrAlgorithm, k.IntegID, c)
	}
	return &Algorithm{Name: c, Key: k.EncrKey}, &Algorithm{Name: i.name, Key: k.IntegKey, Bits: i.bits}, nil, nil
}
