package ike

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// Reassembly limits (RFC 7383 2.6 leaves them to the implementation).
const (
	// DefaultMaxReassembledLen bounds the plaintext of one reassembled
	// message: what one unfragmented IKE message could carry.
	DefaultMaxReassembledLen = message.MaxMessageLen
	// DefaultReassemblyTimeout is how long fragments of an incomplete
	// message are kept.
	DefaultReassemblyTimeout = 30 * time.Second
	// DefaultReassemblyBudget bounds the bytes held for reassembly by all
	// IKE SAs of one endpoint together.
	DefaultReassemblyBudget = 8 << 20
	// fragOverhead is what one expected fragment costs beyond its
	// plaintext (its slot, a slice header); counted against the limits
	// when a reassembly starts, so that many tiny fragments cannot hide
	// their cost.
	fragOverhead = 32
)

// FragmentLimits bounds IKE fragment reassembly on an endpoint. Zero
// fields take the defaults.
type FragmentLimits struct {
	MaxFragments  int           // fragments per message; 0 or above message.MaxFragments: message.MaxFragments
	MaxMessageLen int           // plaintext bytes per reassembled message; 0: DefaultMaxReassembledLen
	Timeout       time.Duration // 0: DefaultReassemblyTimeout
	Budget        int           // bytes held by all reassemblies of the endpoint; 0: DefaultReassemblyBudget
}

func (l FragmentLimits) withDefaults() FragmentLimits {
	if l.MaxFragments <= 0 || l.MaxFragments > message.MaxFragments {
		l.MaxFragments = message.MaxFragments
	}
	if l.MaxMessageLen <= 0 {
		l.MaxMessageLen = DefaultMaxReassembledLen
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultReassemblyTimeout
	}
	if l.Budget <= 0 {
		l.Budget = DefaultReassemblyBudget
	}
	return l
}

// FragmentStats counts IKE fragments on an endpoint since it started.
type FragmentStats struct {
	Sent        uint64 // SKF datagrams sent, retransmissions included
	Received    uint64 // fragments that authenticated and were kept
	Reassembled uint64 // messages completed from fragments
	BadICV      uint64 // fragments dropped because they did not authenticate
	Duplicates  uint64 // authenticated fragments already held
	Dropped     uint64 // fragments dropped for other reasons: not negotiated, stale message ID, smaller Total Fragments, malformed
	OverLimit   uint64 // reassemblies abandoned at a limit (fragments, bytes, endpoint budget)
	Expired     uint64 // reassemblies abandoned at the timeout
}

type fragCounters struct {
	sent, received, reassembled, badICV, duplicates, dropped, overLimit, expired atomic.Uint64
}

// fragEndpoint is an endpoint's share of fragmentation: limits, the byte
// budget all its reassemblies draw from, and counters.
type fragEndpoint struct {
	lim   FragmentLimits
	used  atomic.Int64
	stats fragCounters
}

func (f *fragEndpoint) init(l FragmentLimits) { f.lim = l.withDefaults() }

// take reserves n bytes of the endpoint budget.
func (f *fragEndpoint) take(n int) bool {
	if f.used.Add(int64(n)) > int64(f.lim.Budget) {
		f.used.Add(-int64(n))
		return false
	}
	return true
}

func (f *fragEndpoint) give(n int) { f.used.Add(-int64(n)) }

// FragmentStats returns the endpoint's fragment counters.
func (e *Endpoint) FragmentStats() FragmentStats {
	c := &e.frag.stats
	return FragmentStats{
		Sent: c.sent.Load(), Received: c.received.Load(), Reassembled: c.reassembled.Load(),
		BadICV: c.badICV.Load(), Duplicates: c.duplicates.Load(), Dropped: c.dropped.Load(),
		OverLimit: c.overLimit.Load(), Expired: c.expired.Load(),
	}
}

// ReassemblyBytes returns the bytes currently held for reassembly by the
// endpoint's IKE SAs.
func (e *Endpoint) ReassemblyBytes() int { return int(e.frag.used.Load()) }

// fragState is an IKE SA's fragmentation state: whether it was
// negotiated, and one reassembly per direction (window size 1: at most one
// request and one response are ever expected).
type fragState struct {
	on        bool
	req, resp reassembly
}

// reassembled is a message rebuilt from fragments: the decrypted payload
// chain starting with type first.
type reassembled struct {
	first message.PayloadType
	plain []byte
}

// Reassembly outcomes besides completion.
var (
	errFragStale     = errors.New("fragment of another message or attempt")
	errFragDuplicate = errors.New("duplicate fragment")
	errFragLimit     = errors.New("reassembly limit exceeded")
)

// reassembly collects the authenticated, decrypted fragments of one
// message. It owns its bytes against the endpoint budget and gives them
// back when it completes or is reset.
type reassembly struct {
	active   bool
	msgID    uint32
	exch     message.ExchangeType
	total    uint16
	got      uint16
	held     int // bytes counted against the limits
	first    message.PayloadType
	parts    [][]byte // by Fragment Number - 1; allocated per reassembly so an idle IKE SA holds none
	deadline time.Time
	owner    any // the cipher the fragments were opened with
	gen      uint64
	timer    *time.Timer
	// done names the last message completed here, so that its late
	// duplicates do not start another reassembly.
	done      uint32
	doneOwner any
}

// reset drops the fragments and returns their bytes to f.
func (r *reassembly) reset(f *fragEndpoint) {
	f.give(r.held)
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	*r = reassembly{gen: r.gen + 1, done: r.done, doneOwner: r.doneOwner}
}

// add keeps one authenticated fragment (plain is its decrypted content and
// is copied). It returns the message once the last fragment is in. The
// RFC 7383 2.6 rules: a fragment of another message ID, a reassembly past
// its deadline, or one opened with other keys starts over; a larger Total
// Fragments restarts the reassembly (the sender re-fragmented smaller), a
// smaller one is a leftover of the previous attempt and is dropped;
// duplicates are dropped.
func (r *reassembly) add(f *fragEndpoint, now time.Time, owner any, hdr message.Header, skf *message.SKF, plain []byte) (*reassembled, bool, error) {
	lim := f.lim
	if int(skf.Total) > lim.MaxFragments {
		return nil, false, fmt.Errorf("%d fragments, at most %d: %w", skf.Total, lim.MaxFragments, errFragLimit)
	}
	if r.doneOwner == owner && r.done == hdr.MessageID {
		return nil, false, errFragDuplicate
	}
	restarted := false
	switch {
	case !r.active, r.msgID != hdr.MessageID, r.exch != hdr.Exchange, r.owner != owner, !now.Before(r.deadline):
		if r.active && !now.Before(r.deadline) {
			f.stats.expired.Add(1)
		}
		r.reset(f)
		restarted = true
	case skf.Total > r.total:
		r.reset(f)
		restarted = true
	case skf.Total < r.total:
		return nil, false, fmt.Errorf("Total Fragments %d, reassembling %d: %w", skf.Total, r.total, errFragStale)
	}
	if restarted {
		// The bookkeeping of every fragment to come is paid up front.
		book := int(skf.Total) * fragOverhead
		if !f.take(book) {
			return nil, false, fmt.Errorf("endpoint budget of %d bytes: %w", lim.Budget, errFragLimit)
		}
		r.active, r.msgID, r.exch, r.total, r.owner = true, hdr.MessageID, hdr.Exchange, skf.Total, owner
		r.held = book
		r.parts = make([][]byte, skf.Total)
		r.deadline = now.Add(lim.Timeout)
	}
	i := int(skf.Number) - 1
	if r.parts[i] != nil {
		return nil, false, errFragDuplicate
	}
	cost := len(plain)
	if r.held+cost > lim.MaxMessageLen+int(r.total)*fragOverhead {
		r.reset(f)
		return nil, false, fmt.Errorf("more than %d bytes: %w", lim.MaxMessageLen, errFragLimit)
	}
	if !f.take(cost) {
		r.reset(f)
		return nil, false, fmt.Errorf("endpoint budget of %d bytes: %w", lim.Budget, errFragLimit)
	}
	r.held += cost
	// A zero-length part still marks the fragment as present.
	r.parts[i] = append(make([]byte, 0, len(plain)+1), plain...)
	if skf.Number == 1 {
		r.first = skf.NextPayload
	}
	r.got++
	if r.got < r.total {
		return nil, restarted, nil
	}
	n := 0
	for _, p := range r.parts {
		n += len(p)
	}
	out := &reassembled{first: r.first, plain: make([]byte, 0, n)}
	for _, p := range r.parts {
		out.plain = append(out.plain, p...)
	}
	r.reset(f)
	r.done, r.doneOwner = hdr.MessageID, owner
	return out, restarted, nil
}

// defragment takes a datagram whose first payload is SKF. It returns the
// reassembled message (and true) when this fragment completed one, and
// false when the fragment was kept, answered or dropped. Every fragment
// is authenticated before anything is kept or answered; one that is not
// is dropped silently and counted (RFC 7383 2.6).
func (sa *IKESA) defragment(in inbound) (inbound, bool) {
	f := &sa.ep.frag
	sa.mu.Lock()
	defer sa.mu.Unlock()
	drop := func(why string, err error) (inbound, bool) {
		f.stats.dropped.Add(1)
		sa.log.Debug("ike: fragment dropped", "why", why, "id", in.hdr.MessageID, "err", err)
		return inbound{}, false
	}
	if !sa.frag.on || sa.in == nil || sa.state == stateDead || in.hdr.Exchange == message.IKE_SA_INIT {
		return drop("fragmentation not negotiated or no keys", nil)
	}
	response := in.hdr.IsResponse()
	id := in.hdr.MessageID
	slot, want := &sa.frag.req, sa.peerReqID
	if response {
		slot, want = &sa.frag.resp, sa.nextReqID-1
	}
	oldReq := !response && id+1 == sa.peerReqID && sa.lastResp != nil
	if id != want && !oldReq {
		return drop("unexpected message ID", nil)
	}
	m, err := message.Decode(in.pkt)
	if err != nil {
		return drop("malformed", err)
	}
	skf, ok := message.Get(m.Payloads, message.PayloadSKF).(*message.SKF)
	if !ok {
		return drop("no SKF payload", nil)
	}
	// The datagram is ours (a copy made by the read loop): open in place.
	plain, err := sa.in.Open(in.pkt, len(in.pkt)-len(skf.Data))
	if err != nil {
		if errors.Is(err, ikecrypto.ErrIntegrity) {
			f.stats.badICV.Add(1)
			sa.log.Debug("ike: fragment does not authenticate", "id", id, "n", skf.Number)
			return inbound{}, false
		}
		return drop("undecryptable", err)
	}
	if oldReq {
		// RFC 7383 2.6: a retransmitted request's fragment 1 makes us
		// resend the whole response; the other fragments are ignored.
		if skf.Number == 1 {
			sa.sendAll(sa.lastResp, in.from, in.natt)
			return inbound{}, false
		}
		return drop("retransmitted fragment other than 1", nil)
	}
	msg, restarted, err := slot.add(f, time.Now(), sa.in, in.hdr, skf, plain)
	switch {
	case errors.Is(err, errFragDuplicate):
		f.stats.duplicates.Add(1)
		return inbound{}, false
	case errors.Is(err, errFragLimit):
		f.stats.overLimit.Add(1)
		sa.log.Info("ike: reassembly abandoned", "id", id, "err", err)
		return inbound{}, false
	case err != nil:
		return drop("stale", err)
	}
	f.stats.received.Add(1)
	if restarted && slot.active {
		sa.armReassemblyTimer(slot)
	}
	if msg == nil {
		return inbound{}, false
	}
	f.stats.reassembled.Add(1)
	in.frags = msg
	return in, true
}

// armReassemblyTimer frees a reassembly's bytes at its deadline even if no
// further fragment arrives; call with sa.mu held.
func (sa *IKESA) armReassemblyTimer(r *reassembly) {
	f := &sa.ep.frag
	gen := r.gen
	r.timer = time.AfterFunc(time.Until(r.deadline), func() {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		if r.gen == gen && r.active {
			f.stats.expired.Add(1)
			r.reset(f)
		}
	})
}

// fragDoneLocked records that message id of r's direction was received
// or answered whole (or from fragments): a partial reassembly of it is
// freed now, and its late fragments are duplicates. Call with sa.mu held.
func (sa *IKESA) fragDoneLocked(r *reassembly, id uint32) {
	if r.active && r.msgID == id {
		r.reset(&sa.ep.frag)
	}
	r.done, r.doneOwner = id, any(sa.in)
}

// releaseFragments gives back what the IKE SA holds for reassembly; call
// with sa.mu held.
func (sa *IKESA) releaseFragmentsLocked() {
	sa.frag.req.reset(&sa.ep.frag)
	sa.frag.resp.reset(&sa.ep.frag)
}
