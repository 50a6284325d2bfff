package ikecrypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
)

// keyPad is the fixed string of RFC 7296 section 2.15.
const keyPad = "Key Pad for IKEv2"

// SignedOctets returns the octets an AUTH payload covers (RFC 7296 section
// 2.15): the sender's first message (IKE_SA_INIT request or response) as
// sent, the peer's nonce data, and prf(SK_px, body of the sender's ID
// payload), where SK_px is SK_pi for the initiator and SK_pr for the
// responder.
func SignedOctets(p *PRF, realMessage, peerNonce, skp, idBody []byte) []byte {
	out := make([]byte, 0, len(realMessage)+len(peerNonce)+p.size)
	out = append(append(out, realMessage...), peerNonce...)
	return p.sum(out, skp, idBody)
}

// PSKAuth returns the shared-key AUTH data
// prf(prf(Shared Secret, "Key Pad for IKEv2"), signedOctets).
func PSKAuth(p *PRF, psk, signedOctets []byte) []byte {
	pool := pskMACPool(p, psk)
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(signedOctets)
	out := m.Sum(make([]byte, 0, p.size))
	pool.Put(m)
	return out
}

// VerifyPSKAuth reports whether got is the shared-key AUTH data for
// signedOctets, comparing in constant time.
func VerifyPSKAuth(p *PRF, psk, signedOctets, got []byte) bool {
	return hmac.Equal(PSKAuth(p, psk, signedOctets), got)
}

// maxPSKMACs bounds pskMACs; past it the cache starts over, so that a
// process cycling through pre-shared keys keeps no more than this many.
const maxPSKMACs = 64

// pskMACs holds, per PRF and pre-shared key, HMACs keyed with
// prf(Shared Secret, "Key Pad for IKEv2"). That key is the same in every
// handshake with the PSK, both ways, and keying an HMAC (two hash states
// and their pads) was the largest allocation of a PSK handshake; a pool,
// as a keyed HMAC is not safe for concurrent use. Entries are named by a
// digest of the PSK so that the cache does not hold the PSK itself.
var pskMACs struct {
	sync.Mutex
	m map[[sha256.Size]byte]*sync.Pool
}

func pskMACPool(p *PRF, psk []byte) *sync.Pool {
	d := sha256.New()
	var id [2]byte
	binary.BigEndian.PutUint16(id[:], p.ID)
	d.Write(id[:])
	d.Write(psk)
	var name [sha256.Size]byte
	d.Sum(name[:0])
	pskMACs.Lock()
	defer pskMACs.Unlock()
	if pool := pskMACs.m[name]; pool != nil {
		return pool
	}
	if pskMACs.m == nil || len(pskMACs.m) >= maxPSKMACs {
		pskMACs.m = map[[sha256.Size]byte]*sync.Pool{}
	}
	key := p.Sum(psk, []byte(keyPad))
	pool := &sync.Pool{New: func() any { return hmac.New(p.hash, key) }}
	pskMACs.m[name] = pool
	return pool
}
