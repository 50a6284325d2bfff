package espsynth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/netip"

	"golang.org/x/crypto/chacha20poly1305"
)

// SA describes one Security Association as the generator keyed it: enough to
// verify, decrypt or hand the traffic to Wireshark's ESP SA table.
type SA struct {
	// Src and Dst are the outer addresses of the ESP (or ESP-in-UDP) packets.
	Src, Dst netip.Addr
	// SPI identifies the SA on the wire.
	SPI uint32
	// Cipher and Auth are the transforms; Auth is AuthNone for combined modes.
	Cipher Cipher
	Auth   Auth
	// EncKey is the cipher key without salt (empty for NULL).
	EncKey []byte
	// Salt is the 4-byte salt or nonce of AES-CTR, AES-GCM, ChaCha20-Poly1305
	// and ENCR_NULL_AUTH_AES_GMAC, which RFC 3686, 4106, 7634 and 4543 take
	// from the end of the keying material; empty for the other ciphers.
	Salt []byte
	// AuthKey is the HMAC key (empty for AuthNone and combined modes).
	AuthKey []byte
	// ICVLen is the length of the ICV on the wire.
	ICVLen int
}

// sa is the sending side of an SA: keys, transforms and the sequence counter.
type sa struct {
	SA
	seq     uint32
	dummies int // packets with next header 59
	lastPad int // pad length of the latest packet
	ivCtr   uint64
	align   int
	block   cipher.Block // AES or 3DES, for CBC and CTR
	aead    cipher.AEAD  // GCM, ChaCha20-Poly1305, GMAC
	mac     hash.Hash
	sumBuf  [64]byte
	ctrBuf  [2 * aes.BlockSize]byte
	nonce   [12]byte
}

// newSA keys an SA with random keys drawn from r. icvLen selects the AES-GCM
// tag length (8, 12 or 16); it is ignored by the other ciphers.
func newSA(r *rand.Rand, src, dst netip.Addr, spi uint32, c Cipher, a Auth, icvLen int) (*sa, error) {
	s := &sa{SA: SA{Src: src, Dst: dst, SPI: spi, Cipher: c, Auth: a}, align: c.align()}
	if c.Combined() {
		s.Auth = AuthNone
	}
	// Counter-mode IVs must never repeat under a key (RFC 3686, 4106): start
	// a counter at a random point and step it per packet.
	s.ivCtr = r.Uint64()
	var err error
	switch c {
	case CipherNULL:
	case CipherAESCBC, CipherAESCTR, CipherAESGCM, CipherNullAuthAESGMAC:
		s.EncKey = randBytes(r, []int{16, 32}[r.IntN(2)])
		if c != CipherAESCBC {
			s.Salt = randBytes(r, 4)
		}
		if s.block, err = aes.NewCipher(s.EncKey); err != nil {
			return nil, fmt.Errorf("espsynth: AES key: %w", err)
		}
		if c == CipherAESGCM || c == CipherNullAuthAESGMAC {
			if s.aead, err = cipher.NewGCM(s.block); err != nil {
				return nil, fmt.Errorf("espsynth: GCM: %w", err)
			}
		}
	case Cipher3DES:
		s.EncKey = randBytes(r, 24)
		if s.block, err = des.NewTripleDESCipher(s.EncKey); err != nil {
			return nil, fmt.Errorf("espsynth: 3DES key: %w", err)
		}
	case CipherChaCha20Poly1305:
		s.EncKey = randBytes(r, chacha20poly1305.KeySize)
		s.Salt = randBytes(r, 4)
		if s.aead, err = chacha20poly1305.New(s.EncKey); err != nil {
			return nil, fmt.Errorf("espsynth: ChaCha20-Poly1305 key: %w", err)
		}
	default:
		return nil, fmt.Errorf("espsynth: unknown cipher %v", c)
	}
	switch {
	case c == CipherAESGCM:
		switch icvLen {
		case 0:
			icvLen = 16
		case 8, 12, 16:
		default:
			return nil, fmt.Errorf("espsynth: AES-GCM ICV length %d, want 8, 12 or 16", icvLen)
		}
		s.ICVLen = icvLen
	case c.Combined():
		s.ICVLen = 16
	default:
		s.ICVLen = s.Auth.ICVLen()
		if s.Auth != AuthNone {
			s.AuthKey = randBytes(r, s.Auth.keyLen())
			s.mac = hmac.New(hashFunc(s.Auth), s.AuthKey)
		}
	}
	return s, nil
}

// hashFunc is the hash behind an HMAC integrity transform.
func hashFunc(a Auth) func() hash.Hash {
	switch a {
	case AuthHMACSHA1:
		return sha1.New
	case AuthHMACSHA256:
		return sha256.New
	case AuthHMACSHA384:
		return sha512.New384
	case AuthHMACSHA512:
		return sha512.New
	}
	return nil
}

// begin appends the ESP header with the next sequence number and the IV, and
// returns the offset of the ESP header. The caller then appends the payload
// and calls finish.
func (s *sa) begin(dst []byte, r *rand.Rand) ([]byte, int) {
	off := len(dst)
	s.seq++
	dst = binary.BigEndian.AppendUint32(dst, s.SPI)
	dst = binary.BigEndian.AppendUint32(dst, s.seq)
	switch s.Cipher {
	case CipherNULL:
	case CipherAESCBC, Cipher3DES:
		// CBC needs unpredictable IVs (RFC 3602 section 3).
		for range s.Cipher.IVLen() / 8 {
			dst = binary.BigEndian.AppendUint64(dst, r.Uint64())
		}
	default:
		s.ivCtr++
		dst = binary.BigEndian.AppendUint64(dst, s.ivCtr)
	}
	return dst, off
}

// finish pads the payload that follows the ESP header at off, appends pad
// length and next header, encrypts, and appends the ICV. extraPad asks for
// that many more padding bytes than the minimum; it is rounded down to the
// cipher's alignment and capped so the pad length stays within 255.
func (s *sa) finish(dst []byte, off int, nextHeader uint8, extraPad int) []byte {
	ivEnd := off + 8 + s.Cipher.IVLen()
	n := len(dst) - ivEnd + 2
	pad := (s.align - n%s.align) % s.align
	if extraPad > 0 {
		extraPad -= extraPad % s.align
		for pad+extraPad > 255 {
			extraPad -= s.align
		}
		pad += extraPad
	}
	for i := 1; i <= pad; i++ {
		dst = append(dst, byte(i))
	}
	dst = append(dst, byte(pad), nextHeader)
	s.lastPad = pad
	// Room for the largest ICV, so in-place sealing never reallocates.
	if cap(dst)-len(dst) < 64 {
		dst = append(dst, make([]byte, 64)...)[:len(dst)]
	}
	iv := dst[off+8 : ivEnd]
	switch s.Cipher {
	case CipherNULL:
	case CipherAESCBC, Cipher3DES:
		cbcEncrypt(s.block, iv, dst[ivEnd:])
	case CipherAESCTR:
		s.ctrXOR(iv, dst[ivEnd:])
	case CipherNullAuthAESGMAC:
		// RFC 4543 section 3.3: everything from the SPI through the next
		// header is AAD; the plaintext is empty, so the output is the tag.
		tag := s.aead.Seal(s.sumBuf[:0], s.nonceFor(iv), nil, dst[off:])
		return append(dst, tag...)
	case CipherAESGCM, CipherChaCha20Poly1305:
		pt := dst[ivEnd:]
		out := s.aead.Seal(pt[:0], s.nonceFor(iv), pt, dst[off:off+8])
		// A truncated GCM tag is the leading bytes of the full one
		// (NIST SP 800-38D section 5.2.1.2); Go only offers 12 to 16.
		return dst[:ivEnd+len(out)-s.aead.Overhead()+s.ICVLen]
	}
	if s.mac != nil {
		s.mac.Reset()
		s.mac.Write(dst[off:])
		sum := s.mac.Sum(s.sumBuf[:0])
		dst = append(dst, sum[:s.ICVLen]...)
	}
	return dst
}

// nonceFor builds the 12-byte salt||IV nonce of RFC 4106, 4543 and 7634.
func (s *sa) nonceFor(iv []byte) []byte {
	copy(s.nonce[:4], s.Salt)
	copy(s.nonce[4:], iv)
	return s.nonce[:]
}

// ctrXOR encrypts b in place with AES-CTR as RFC 3686 section 4 lays out the
// counter block: nonce || IV || 32-bit block counter starting at 1. Written
// out rather than with cipher.NewCTR so that millions of packets cost no
// allocations.
func (s *sa) ctrXOR(iv, b []byte) {
	ctr, ks := s.ctrBuf[:aes.BlockSize], s.ctrBuf[aes.BlockSize:]
	copy(ctr[:4], s.Salt)
	copy(ctr[4:12], iv)
	for i := uint32(1); len(b) > 0; i++ {
		binary.BigEndian.PutUint32(ctr[12:], i)
		s.block.Encrypt(ks, ctr)
		b = b[subtle.XORBytes(b, b, ks):]
	}
}

// cbcEncrypt encrypts b (a whole number of blocks) in place in CBC mode.
// cipher.NewCBCEncrypter would allocate per packet, since every packet has
// its own IV.
func cbcEncrypt(blk cipher.Block, iv, b []byte) {
	bs := blk.BlockSize()
	prev := iv
	for len(b) >= bs {
		cur := b[:bs]
		subtle.XORBytes(cur, cur, prev)
		blk.Encrypt(cur, cur)
		prev, b = cur, b[bs:]
	}
}

// randBytes returns n bytes from r.
func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	fillRand(r, b)
	return b
}

// fillRand fills b from r, eight bytes per draw.
func fillRand(r *rand.Rand, b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, r.Uint64())
		b = b[8:]
	}
	if len(b) > 0 {
		v := r.Uint64()
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
	}
}
