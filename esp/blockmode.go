package esp

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
)

// The standard library's cipher.NewCBCEncrypter and cipher.NewCTR allocate
// a stream per call; ESP needs a fresh IV per packet, so the modes are
// written here over a cipher.Block that is created once per SA.

// cbcEncrypt encrypts buf (a multiple of 16 bytes) in place.
func cbcEncrypt(b cipher.Block, iv, buf []byte) {
	prev := iv
	for i := 0; i < len(buf); i += 16 {
		blk := buf[i : i+16]
		subtle.XORBytes(blk, blk, prev)
		b.Encrypt(blk, blk)
		prev = blk
	}
}

// cbcDecrypt decrypts buf (a multiple of 16 bytes) in place, from the end
// so that each block's predecessor is still ciphertext when needed.
func cbcDecrypt(b cipher.Block, iv, buf []byte) {
	for i := len(buf) - 16; i >= 0; i -= 16 {
		blk := buf[i : i+16]
		b.Decrypt(blk, blk)
		prev := iv
		if i > 0 {
			prev = buf[i-16 : i]
		}
		subtle.XORBytes(blk, blk, prev)
	}
}

// ctrBatch is how many counter blocks are encrypted per XOR pass.
const ctrBatch = 8

// ctrXOR XORs buf with the AES-CTR keystream whose first counter block is
// ctr (nonce | IV | counter, RFC 3686 4), which it advances; ks is
// scratch of ctrBatch*16 bytes. Both live in the SA so that nothing
// escapes to the heap per packet.
func ctrXOR(b cipher.Block, ctr *[16]byte, buf, ks []byte) {
	c := binary.BigEndian.Uint32(ctr[12:])
	for len(buf) > 0 {
		n := 0
		for ; n < ctrBatch && n*16 < len(buf); n++ {
			binary.BigEndian.PutUint32(ctr[12:], c)
			c++
			b.Encrypt(ks[n*16:n*16+16], ctr[:])
		}
		k := subtle.XORBytes(buf, buf, ks[:n*16])
		buf = buf[k:]
	}
}
