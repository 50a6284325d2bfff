package ike

import (
	"net/netip"
	"runtime"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// DefaultQueueLen is the number of received messages an endpoint holds for
// its workers before it drops new ones.
const DefaultQueueLen = 1024

// job is one received IKE message waiting for a worker.
type job struct {
	pkt  []byte // owned by the job
	from netip.AddrPort
	natt bool
}

// startWorkers starts the pool that handles received messages. The read
// loops only copy datagrams into the queue, so Diffie-Hellman, key
// derivation and AUTH run on up to Workers cores, and a flood that
// outpaces them is dropped at the queue (counted) instead of growing
// memory or delaying the socket reads.
func (e *Endpoint) startWorkers() {
	n := e.lc.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	q := e.lc.QueueLen
	if q <= 0 {
		q = DefaultQueueLen
	}
	e.work = make(chan job, q)
	e.workers.Add(1)
	go e.expireLoop()
	e.workers.Add(n)
	for range n {
		go func() {
			defer e.workers.Done()
			for j := range e.work {
				e.handle(j.pkt, j.from, j.natt)
			}
		}()
	}
}

// expireLoop drops half-open SAs that timed out even when no new
// IKE_SA_INIT request arrives to trigger the scan.
func (e *Endpoint) expireLoop() {
	defer e.workers.Done()
	t := time.NewTicker(expireScan)
	defer t.Stop()
	for {
		select {
		case <-e.closed:
			return
		case <-t.C:
			e.mu.Lock()
			e.expireHalfOpenLocked()
			e.mu.Unlock()
		}
	}
}

// enqueue hands a received message (still in the read buffer) to the
// workers, or drops it when the queue is full. A response that is not a
// fragment is dispatched right here instead: handling it is a header
// decode, an SPI look-up and a hand-off to the goroutine waiting for it
// (which decrypts it), cheaper than the hop through a worker that it
// would cost otherwise, for each of the three responses per IKE SA an
// initiator such as espy ike bench receives.
func (e *Endpoint) enqueue(pkt []byte, from netip.AddrPort, natt bool) {
	if plainResponse(pkt) {
		e.handle(append([]byte(nil), pkt...), from, natt)
		return
	}
	// Checked before copying so that a flood costs no allocation; the
	// select below still drops if the queue filled in between.
	if len(e.work) == cap(e.work) {
		e.queueDrops.Add(1)
		return
	}
	select {
	case e.work <- job{pkt: append([]byte(nil), pkt...), from: from, natt: natt}:
	default:
		e.queueDrops.Add(1)
	}
}

// plainResponse reports whether pkt claims to be an IKE response whose
// first payload is not an SKF fragment (reassembly authenticates each
// fragment, which is work for a worker).
func plainResponse(pkt []byte) bool {
	return len(pkt) >= message.HeaderLen && message.Flags(pkt[19])&message.FlagResponse != 0 && message.PayloadType(pkt[16]) != message.PayloadSKF
}

// stopWorkers lets the workers finish the queue and waits for them; call
// after the read loops have ended. Close may run more than once.
func (e *Endpoint) stopWorkers() {
	e.stopOnce.Do(func() { close(e.work) })
	e.workers.Wait()
}

// Stats are an endpoint's counters and gauges.
type Stats struct {
	SAs         int    // IKE SAs in the table, half-open ones included
	HalfOpen    int    // responder SAs whose IKE_AUTH has not arrived
	Queued      int    // received messages waiting for a worker
	QueueDrops  uint64 // received messages dropped because the queue was full
	CookiesSent uint64 // IKE_SA_INIT requests answered with N(COOKIE)
	Retransmits uint64 // requests of ours sent again for want of an answer
}

// Stats returns the endpoint's current counters.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	s := Stats{SAs: len(e.sas), HalfOpen: len(e.halfOpen)}
	e.mu.Unlock()
	s.Queued = len(e.work)
	s.QueueDrops = e.queueDrops.Load()
	s.CookiesSent = e.cookiesSent.Load()
	s.Retransmits = e.retransmits.Load()
	return s
}
