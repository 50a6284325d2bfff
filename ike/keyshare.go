package ike

import (
	"io"
	"sync"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
)

// KeyShareCache lets an initiator reuse one Diffie-Hellman key pair per
// group across several IKE SAs, as RFC 7296 section 2.12 permits, so that
// a load generator does not spend most of its CPU on key generation. Set
// it in Config.ReuseKE; it is consulted only for the KE payload of an
// initiator's IKE_SA_INIT. The responder, CREATE_CHILD_SA and rekeying
// always make a fresh key pair.
//
// The caveats of RFC 7296 2.12 apply: the IKE SAs that share an
// exponential have no perfect forward secrecy with respect to each other
// while its private key is kept (whoever obtains it can compute the g^ir of
// every SA made with it), so a key pair is used for at most maxUses SAs
// and maxAge, after which it is dropped and a new one made. SKEYSEED still
// differs per SA because the nonces and the responder's exponential do.
// It is meant for benchmarks and load tests, not for SAs that protect real
// traffic.
//
// A KeyShareCache is safe for concurrent use by many handshakes; so is
// the shared ikecrypto.KeyExchange, whose SharedSecret only reads the
// private key.
type KeyShareCache struct {
	maxUses int
	maxAge  time.Duration
	now     func() time.Time // time.Now; replaced by tests

	mu     sync.Mutex
	shares map[uint16]*keyShare
}

type keyShare struct {
	kex  ikecrypto.KeyExchange
	made time.Time
	uses int
}

// NewKeyShareCache returns a cache that hands out each key pair for at
// most maxUses IKE SAs (at least 1) and for at most maxAge after it was
// made (0: no age limit; then maxUses alone bounds it).
func NewKeyShareCache(maxUses int, maxAge time.Duration) *KeyShareCache {
	return &KeyShareCache{maxUses: max(maxUses, 1), maxAge: maxAge, now: time.Now, shares: map[uint16]*keyShare{}}
}

// get returns the key exchange for group: the cached one while within its
// limits, else a fresh one made with rand, which is cached in its place.
// The key is generated under the lock so that concurrent handshakes after
// an expiry share one new key instead of each making their own.
func (c *KeyShareCache) get(group uint16, rand io.Reader) (ikecrypto.KeyExchange, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	s := c.shares[group]
	if s == nil || s.uses >= c.maxUses || (c.maxAge > 0 && now.Sub(s.made) >= c.maxAge) {
		kex, err := ikecrypto.GenerateKey(group, rand)
		if err != nil {
			return nil, err
		}
		s = &keyShare{kex: kex, made: now}
		c.shares[group] = s
	}
	s.uses++
	return s.kex, nil
}
