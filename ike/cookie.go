package ike

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// cookieRotate is how long a cookie secret is current. A cookie stays valid
// for up to twice that: the previous secret is still accepted.
const cookieRotate = 30 * time.Second

// cookieJar makes and checks stateless cookies (RFC 7296 2.6):
// Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>), with the
// hash an HMAC-SHA-256 keyed by the secret.
type cookieJar struct {
	mu       sync.Mutex
	version  uint32
	cur      [32]byte
	prev     [32]byte
	hasPrev  bool
	rotateAt time.Time
	now      func() time.Time
}

func newCookieJar() *cookieJar {
	j := &cookieJar{now: time.Now}
	j.rotateLocked()
	return j
}

func (j *cookieJar) rotateLocked() {
	// A secret idle for more than one period is not kept as previous.
	j.prev, j.hasPrev = j.cur, j.version != 0 && j.now().Before(j.rotateAt.Add(cookieRotate))
	if _, err := rand.Read(j.cur[:]); err != nil {
		panic("ike: crypto/rand failed: " + err.Error())
	}
	j.version++
	j.rotateAt = j.now().Add(cookieRotate)
}

func cookieHash(secret []byte, ni []byte, ip netip.Addr, spii uint64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(ni)
	m.Write(ip.Unmap().AsSlice())
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spii)
	m.Write(b[:])
	return m.Sum(nil)
}

// make returns the cookie for an initiator.
func (j *cookieJar) make(ni []byte, ip netip.Addr, spii uint64) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.now().Before(j.rotateAt) {
		j.rotateLocked()
	}
	c := binary.BigEndian.AppendUint32(nil, j.version)
	return append(c, cookieHash(j.cur[:], ni, ip, spii)...)
}

// valid reports whether c is a cookie we made recently for this initiator.
func (j *cookieJar) valid(c, ni []byte, ip netip.Addr, spii uint64) bool {
	if len(c) != 4+sha256.Size {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.now().Before(j.rotateAt) {
		j.rotateLocked()
	}
	var secret []byte
	switch v := binary.BigEndian.Uint32(c); {
	case v == j.version:
		secret = j.cur[:]
	case v == j.version-1 && j.hasPrev:
		secret = j.prev[:]
	default:
		return false
	}
	return hmac.Equal(c[4:], cookieHash(secret, ni, ip, spii))
}
