package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// Default lifetimes (strongSwan's rekey_time defaults).
const (
	DefaultIKERekeyTime   = 4 * time.Hour
	DefaultChildRekeyTime = time.Hour
)

// lifetimeDefaults fills in the lifetimes left at zero the way strongSwan
// does (over_time a tenth of the soft time, rand_time = over_time,
// life_time 110 % of rekey_time) and checks the rest.
func (c *Config) lifetimeDefaults() error {
	if c.IKERekeyTime == 0 {
		c.IKERekeyTime = DefaultIKERekeyTime
	}
	soft := max(c.IKERekeyTime, c.IKEReauthTime)
	if c.IKEOverTime == 0 && soft > 0 {
		c.IKEOverTime = soft / 10
	}
	if c.IKERandTime == 0 {
		c.IKERandTime = max(c.IKEOverTime, 0)
	}
	if c.ChildRekeyTime == 0 {
		c.ChildRekeyTime = DefaultChildRekeyTime
	}
	if c.ChildLifeTime == 0 && c.ChildRekeyTime > 0 {
		c.ChildLifeTime = c.ChildRekeyTime + c.ChildRekeyTime/10
	}
	if c.ChildRandTime == 0 && c.ChildRekeyTime > 0 && c.ChildLifeTime > c.ChildRekeyTime {
		c.ChildRandTime = c.ChildLifeTime - c.ChildRekeyTime
	}
	if c.ChildRekeyTime > 0 && c.ChildLifeTime > 0 && c.ChildLifeTime <= c.ChildRekeyTime {
		return fmt.Errorf("%w: Child SA life time %v not above its rekey time %v", ErrConfig, c.ChildLifeTime, c.ChildRekeyTime)
	}
	if c.ChildRekeyBytes > 0 && c.ChildLifeBytes > 0 && c.ChildLifeBytes <= c.ChildRekeyBytes {
		return fmt.Errorf("%w: Child SA life bytes %d not above its rekey bytes %d", ErrConfig, c.ChildLifeBytes, c.ChildRekeyBytes)
	}
	if c.ChildRekeyPackets > 0 && c.ChildLifePackets > 0 && c.ChildLifePackets <= c.ChildRekeyPackets {
		return fmt.Errorf("%w: Child SA life packets %d not above its rekey packets %d", ErrConfig, c.ChildLifePackets, c.ChildRekeyPackets)
	}
	return nil
}

// childLimits returns the volume limits of a new Child SA: the soft ones
// less their jitter, as the time-based rekey is.
func (sa *IKESA) childLimits() Limits {
	c := sa.cfg
	return Limits{
		SoftBytes:   sa.jitterCount(c.ChildRekeyBytes, c.ChildRandBytes),
		HardBytes:   c.ChildLifeBytes,
		SoftPackets: sa.jitterCount(c.ChildRekeyPackets, c.ChildRandPackets),
		HardPackets: c.ChildLifePackets,
	}
}

// jitterCount returns n less a random part of up to r (at most half of n,
// so that a rekey never fires at once).
func (sa *IKESA) jitterCount(n, r uint64) uint64 {
	if n == 0 || r == 0 {
		return n
	}
	r = min(r, n/2)
	b, err := sa.randomBytes(8)
	if err != nil || r == 0 {
		return n
	}
	return n - binary.BigEndian.Uint64(b)%(r+1)
}

// childLimitReached runs (on its own goroutine) when the data plane
// reports that Child SA c crossed a volume limit: the soft one rekeys it,
// the hard one deletes it, as the lifetime timers do.
func (sa *IKESA) childLimitReached(c *ChildSA, hard bool) {
	if hard {
		sa.mu.Lock()
		replaced := c.rk.replacedBy != nil || c.rk.done
		sa.mu.Unlock()
		if replaced {
			// A rekey that replaced it, or a Delete already under
			// way (the other direction's hard limit), removes it; a
			// Delete of our own would cross that one.
			return
		}
		sa.log.Info("ike: Child SA volume hard limit reached, deleting", "in", fmt.Sprintf("%08x", c.InSPI))
		sa.expireChild(c)
		return
	}
	sa.log.Info("ike: Child SA volume rekey limit reached", "in", fmt.Sprintf("%08x", c.InSPI))
	sa.autoRekey(c)
}

// lifecycle is the per-IKE SA state of lifetimes, reauthentication and IKE
// SA rekey collisions; guarded by the IKE SA's mu.
type lifecycle struct {
	rekey, reauth, hard *time.Timer
	// origRemote is where Initiate reached the peer; only an IKE SA this
	// host initiated can be reauthenticated from here.
	origRemote netip.AddrPort
	// rekeyNi is the nonce of our outstanding IKE SA rekey request.
	rekeyNi []byte
	// peerRekey is the peer's IKE SA rekey that we answered while ours was
	// outstanding (RFC 7296 2.8.2), not yet switched to.
	peerRekey *ikeKeys
	// oldDeleted records that the peer deleted the old IKE SA while our
	// rekey was outstanding: its own rekey won.
	oldDeleted bool
	// abortRekey ends the wait for the answer to our IKE SA rekey: once
	// the peer deleted the old SA it will not answer on it, and until we
	// take the peer's new SA we drop what the peer sends on that one.
	abortRekey context.CancelFunc
	// collisions counts resolved IKE SA rekey collisions; lastLowest holds
	// the lowest nonce of the redundant SA and of the survivor.
	collisions int
	lastLowest [2][]byte
}

func (l *lifecycle) stop() {
	for _, t := range []*time.Timer{l.rekey, l.reauth, l.hard} {
		if t != nil {
			t.Stop()
		}
	}
	l.rekey, l.reauth, l.hard = nil, nil, nil
}

// jitter returns d less a random part of up to r (never all of d).
func (sa *IKESA) jitter(d, r time.Duration) time.Duration {
	if r <= 0 {
		return d
	}
	r = min(r, d/2)
	b, err := sa.randomBytes(4)
	if err != nil {
		return d
	}
	return d - time.Duration(float64(r)*float64(binary.BigEndian.Uint32(b))/float64(^uint32(0)))
}

// lifeContext returns a context that ends when the IKE SA or the endpoint
// goes, for exchanges started by timers.
func (sa *IKESA) lifeContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sa.dead:
		case <-sa.ep.closed:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

// startLifetimeLocked (re)starts the IKE SA's soft and hard lifetime
// timers; called when it is established and when it was rekeyed. The hard
// lifetime is the earliest soft one plus IKEOverTime, as in strongSwan.
func (sa *IKESA) startLifetimeLocked() {
	sa.lt.stop()
	if sa.state != stateEstablished || sa.retired {
		return
	}
	c := sa.cfg
	first := time.Duration(-1)
	if d := c.IKERekeyTime; d > 0 {
		d = sa.jitter(d, c.IKERandTime)
		sa.lt.rekey = time.AfterFunc(d, sa.autoRekeyIKE)
		first = d
	}
	if d := c.IKEReauthTime; d > 0 {
		d = sa.jitter(d, c.IKERandTime)
		if sa.lt.origRemote.IsValid() {
			sa.lt.reauth = time.AfterFunc(d, sa.autoReauth)
		}
		if first < 0 || d < first {
			first = d
		}
	}
	if first >= 0 && c.IKEOverTime > 0 {
		sa.lt.hard = time.AfterFunc(first+c.IKEOverTime, sa.expireIKE)
	}
}

// autoRekeyIKE rekeys the IKE SA when its rekey time has come, and retries
// after a tenth of IKERekeyTime until the hard lifetime when that fails.
func (sa *IKESA) autoRekeyIKE() {
	ctx, cancel := sa.lifeContext()
	defer cancel()
	err := sa.RekeyIKE(ctx)
	if err == nil || errors.Is(err, ErrDeleted) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return
	}
	sa.log.Info("ike: IKE SA rekey failed, retrying", "err", err)
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state == stateEstablished {
		sa.lt.rekey = time.AfterFunc(max(sa.cfg.IKERekeyTime/10, time.Second), sa.autoRekeyIKE)
	}
}

// autoReauth reauthenticates the IKE SA when its reauthentication time has
// come, retrying like autoRekeyIKE.
func (sa *IKESA) autoReauth() {
	ctx, cancel := sa.lifeContext()
	defer cancel()
	_, err := sa.Reauthenticate(ctx)
	if err == nil || errors.Is(err, ErrDeleted) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return
	}
	sa.log.Info("ike: IKE SA reauthentication failed, retrying", "err", err)
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state == stateEstablished {
		sa.lt.reauth = time.AfterFunc(max(sa.cfg.IKEReauthTime/10, time.Second), sa.autoReauth)
	}
}

// expireIKE deletes the IKE SA at its hard lifetime.
func (sa *IKESA) expireIKE() {
	if !sa.isEstablished() {
		return
	}
	sa.log.Info("ike: IKE SA hard lifetime reached, deleting")
	ctx, cancel := sa.lifeContext()
	defer cancel()
	if err := sa.Delete(ctx); err != nil {
		sa.log.Info("ike: delete at hard lifetime", "err", err)
	}
}

// addChildLocked adds an installed Child SA to the IKE SA and starts its
// rekey (ChildRekeyTime less jitter) and hard lifetime (ChildLifeTime)
// timers.
func (sa *IKESA) addChildLocked(c *ChildSA) {
	sa.children = append(sa.children, c)
	cfg := sa.cfg
	if d := cfg.ChildRekeyTime; d > 0 {
		sa.scheduleRekeyLocked(c, sa.jitter(d, cfg.ChildRandTime))
	}
	if d := cfg.ChildLifeTime; d > 0 {
		c.hardTimer = time.AfterFunc(d, func() { sa.expireChild(c) })
	}
}

func (sa *IKESA) scheduleRekeyLocked(c *ChildSA, d time.Duration) {
	c.rekeyTimer = time.AfterFunc(d, func() { sa.autoRekey(c) })
}

// stopTimers cancels the Child SA's lifetime timers; call with the IKE
// SA's mu held (or once the SA is no longer shared).
func (c *ChildSA) stopTimers() {
	if c.rekeyTimer != nil {
		c.rekeyTimer.Stop()
	}
	if c.hardTimer != nil {
		c.hardTimer.Stop()
	}
}

// autoRekey runs when a Child SA's rekey time has come.
func (sa *IKESA) autoRekey(c *ChildSA) {
	sa.mu.Lock()
	ok := sa.state == stateEstablished && sa.hasChildLocked(c) && !c.rk.rekeying && !c.rk.done && c.rk.replacedBy == nil
	sa.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := sa.lifeContext()
	defer cancel()
	_, err := sa.RekeyChild(ctx, c)
	if err == nil || errors.Is(err, ErrNoChild) || errors.Is(err, ErrRekeying) || errors.Is(err, ErrDeleted) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return
	}
	sa.log.Info("ike: Child SA rekey failed, retrying", "in", fmt.Sprintf("%08x", c.InSPI), "err", err)
	sa.mu.Lock()
	if sa.hasChildLocked(c) && c.rk.replacedBy == nil && !c.rk.done {
		sa.scheduleRekeyLocked(c, max(sa.cfg.ChildRekeyTime/10, time.Second))
	}
	sa.mu.Unlock()
}

// expireChild deletes a Child SA that reached its hard lifetime without
// being replaced.
func (sa *IKESA) expireChild(c *ChildSA) {
	if err := sa.DeleteChild(context.Background(), c); err != nil && !errors.Is(err, ErrNoChild) {
		sa.log.Info("ike: delete of an expired Child SA", "in", fmt.Sprintf("%08x", c.InSPI), "err", err)
	}
}

// DeleteChild deletes one Child SA with an INFORMATIONAL exchange and
// unregisters it; the IKE SA and its other Child SAs stay. The Child SA is
// unregistered even when the peer does not answer.
func (sa *IKESA) DeleteChild(ctx context.Context, c *ChildSA) error {
	sa.mu.Lock()
	if sa.state != stateEstablished || !sa.hasChildLocked(c) {
		sa.mu.Unlock()
		return ErrNoChild
	}
	c.rk.done = true // a rekey of it by the peer is answered TEMPORARY_FAILURE
	sa.mu.Unlock()
	sa.log.Info("ike: deleting Child SA", "in", fmt.Sprintf("%08x", c.InSPI))
	ctx, cancel := context.WithTimeout(ctx, sa.cfg.Retransmit.Total()+time.Second)
	defer cancel()
	_, err := sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, c.InSPI)}}})
	sa.mu.Lock()
	sa.dropChildLocked(c)
	sa.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ike: delete Child SA %08x: %w", c.InSPI, err)
	}
	return nil
}
