package esptun

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/espy-dpi/espy/ike"
)

// Sequence-number limits of outbound SAs. RFC 4303 3.3.3 forbids letting
// the counter cycle, so a new SA must be in place before it runs out: the
// soft limit leaves 2^24 packets (2^32 with ESN) for the rekey, the hard
// one is the last number there is.
const (
	seqSoft32 = 1<<32 - 1<<24
	seqHard32 = 1<<32 - 1
	seqSoft64 = ^uint64(0) - 1<<32 + 1
	seqHard64 = ^uint64(0)
)

// errExpired: the outbound SA reached its hard limit and sends nothing.
var errExpired = errors.New("esptun: SA reached its hard volume limit")

// limiter holds one SA direction's volume limits and whether they have
// been reported; the packet paths check it with a few comparisons and
// atomic loads, without allocating.
type limiter struct {
	soft, hard ike.Limits // only the Soft* fields of soft, Hard* of hard are used
	seqSoft    uint64     // 0: none
	seqHard    uint64
	// softDone and hardDone make each limit fire once; hardDone also
	// stops the SA's use.
	softDone, hardDone atomic.Bool
}

func newLimiter(l ike.Limits, seqSoft, seqHard uint64) *limiter {
	return &limiter{soft: l, hard: l, seqSoft: seqSoft, seqHard: seqHard}
}

// expired reports whether the hard limit was reached.
func (l *limiter) expired() bool { return l.hardDone.Load() }

// check takes the SA's totals after one more packet (and its last
// sequence number, 0 inbound) and reports the limits crossed for the
// first time. A hard limit reached before or with the soft one reports
// only the hard one: the SA is deleted, a rekey would be wasted.
func (l *limiter) check(pkts, bytes, seq uint64) (soft, hard bool) {
	if l.hardDone.Load() {
		return false, false
	}
	if reached(pkts, l.hard.HardPackets) || reached(bytes, l.hard.HardBytes) || reached(seq, l.seqHard) {
		l.softDone.Store(true)
		return false, !l.hardDone.Swap(true)
	}
	if l.softDone.Load() {
		return false, false
	}
	if reached(pkts, l.soft.SoftPackets) || reached(bytes, l.soft.SoftBytes) || reached(seq, l.seqSoft) {
		return !l.softDone.Swap(true), false
	}
	return false, false
}

func reached(n, limit uint64) bool { return limit != 0 && n >= limit }

// SetLimitHandler implements ike.LimitReporter: h learns when an SA
// crosses a soft or hard volume limit, including the data plane's own
// limits before an outbound sequence number runs out.
func (d *DataPlane) SetLimitHandler(h ike.LimitHandler) {
	if h == nil {
		d.limitHandler.Store(nil)
		return
	}
	d.limitHandler.Store(&h)
}

// report passes the limits check found crossed to the handler.
func (d *DataPlane) report(spi uint32, inbound, soft, hard bool) {
	if !soft && !hard {
		return
	}
	if hard {
		d.log.Info("esptun: SA reached its hard volume limit", "spi", fmt.Sprintf("%08x", spi), "inbound", inbound)
	}
	if h := d.limitHandler.Load(); h != nil {
		(*h)(spi, inbound, hard)
	}
}

// seal seals payload on outbound SA sa and counts it against the SA's
// limits; after the hard limit it refuses with errExpired.
func (d *DataPlane) seal(sa *outSA, buf, payload []byte, nh uint8) ([]byte, error) {
	if sa.lim.expired() {
		return buf, errExpired
	}
	pkt, err := sa.o.Seal(buf, payload, nh)
	if err != nil {
		return pkt, err
	}
	p, b := sa.o.Volume()
	soft, hard := sa.lim.check(p, b, sa.o.Seq())
	d.report(sa.info.SPI, false, soft, hard)
	return pkt, nil
}

// open opens pkt with inbound SA sa and counts it against the SA's
// limits; after the hard limit it refuses with errExpired, as the kernel
// drops the packets of an expired SA.
func (d *DataPlane) open(sa *inSA, pkt []byte) (payload []byte, nh uint8, err error) {
	if sa.lim.expired() {
		return nil, 0, errExpired
	}
	payload, nh, _, err = sa.in.Open(pkt)
	if err != nil {
		return nil, 0, err
	}
	p, b := sa.in.Volume()
	soft, hard := sa.lim.check(p, b, 0)
	d.report(sa.info.SPI, true, soft, hard)
	return payload, nh, nil
}
