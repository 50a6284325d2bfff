package replay

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/espy-dpi/espy/capture"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/verdictlog"
)

// Options configures an Analyzer.
type Options struct {
	// UDPPorts are RFC 3948 ports besides 4500; TCPPorts carry RFC 9329
	// ESP-in-TCP streams.
	UDPPorts, TCPPorts []uint16
	// Engine and Cache tune the heuristics and the flow table.
	Engine heuristics.Config
	Cache  flowcache.Config
	// Log, when set, receives a JSON line per verdict, revocation and
	// flow end.
	Log *verdictlog.Writer
	// Inner, when set, receives the cleartext of null flows.
	Inner *InnerWriter
	// SweepEvery is the capture time between sweeps of idle flows.
	// Default 10 s.
	SweepEvery time.Duration
}

// Counters count frames by what they were.
type Counters struct {
	Frames, ESP, WESP, IKE, Keepalives, Other uint64
	Fragments, Undecodable, UnsupportedLink   uint64
	InnerWritten                              uint64
}

// Analyzer runs captures through the engine. It is not safe for concurrent
// use: replay is one stream of packets in capture order.
type Analyzer struct {
	opt     Options
	dec     packet.Decoder
	pkt     packet.Packet
	cache   *flowcache.Cache
	engine  *heuristics.Engine
	summary Summary
	count   Counters
	inner   map[flowcache.Key]heuristics.Inner // inner flow of null flows, for records
	lastSw  int64
	err     error // first output error
	rec     verdictlog.Record
}

// ErrOption reports an impossible option.
var ErrOption = errors.New("replay: invalid option")

// ErrLinkType reports a capture whose link type espy cannot decode.
var ErrLinkType = errors.New("unsupported link type")

// New returns an Analyzer.
func New(opt Options) (*Analyzer, error) {
	a := &Analyzer{opt: opt, inner: make(map[flowcache.Key]heuristics.Inner)}
	if a.opt.SweepEvery == 0 {
		a.opt.SweepEvery = 10 * time.Second
	}
	for _, p := range opt.UDPPorts {
		if !a.dec.AddUDPPort(p) {
			return nil, fmt.Errorf("%w: too many UDP ports", ErrOption)
		}
	}
	for _, p := range opt.TCPPorts {
		if !a.dec.AddTCPPort(p) {
			return nil, fmt.Errorf("%w: too many TCP ports", ErrOption)
		}
	}
	a.engine = heuristics.New(opt.Engine)
	cc := opt.Cache
	cc.OnEvent = a.onEvent
	c, err := flowcache.New(a.engine, cc)
	if err != nil {
		return nil, err
	}
	a.cache = c
	return a, nil
}

// Cache returns the analyzer's flow cache.
func (a *Analyzer) Cache() *flowcache.Cache { return a.cache }

// Counters returns the frame counters so far.
func (a *Analyzer) Counters() Counters { return a.count }

// Summary returns the per-verdict summary of ended flows.
func (a *Analyzer) Summary() *Summary { return &a.summary }

// Read analyzes every packet of r, a capture called name. It returns the
// capture's fault, if any, as a *capture.Error, after analyzing every packet
// before it; a packet of a link type espy cannot decode is such a fault.
func (a *Analyzer) Read(r *capture.Reader, name string, progress func(offset int64)) error {
	var n uint64
	for {
		p, err := r.Next()
		if err == io.EOF {
			return a.err
		}
		if err != nil {
			return err
		}
		if !packet.Supported(packet.LinkType(p.LinkType)) {
			return &capture.Error{File: name, Offset: r.Offset(), Err: fmt.Errorf("packet %d: %w %d", n+1, ErrLinkType, p.LinkType)}
		}
		a.Packet(packet.LinkType(p.LinkType), p.Data, p.Length, p.Timestamp.UnixNano())
		if n++; progress != nil && n&0xffff == 0 {
			progress(r.Offset())
		}
		if a.err != nil {
			return a.err
		}
	}
}

// Packet analyzes one frame of length bytes on the wire, seen at ts (Unix
// nanoseconds).
func (a *Analyzer) Packet(lt packet.LinkType, data []byte, length int, ts int64) {
	a.count.Frames++
	p := &a.pkt
	if err := a.dec.Decode(lt, data, p); err != nil {
		if err == packet.ErrUnsupportedLinkType {
			a.count.UnsupportedLink++
		} else {
			a.count.Undecodable++
		}
		return
	}
	switch p.Kind {
	case packet.KindESP:
		a.count.ESP++
	case packet.KindWESP:
		a.count.WESP++
	case packet.KindIKE:
		a.count.IKE++
		return
	case packet.KindKeepalive:
		a.count.Keepalives++
		return
	case packet.KindFragment:
		a.count.Fragments++
		return
	default:
		a.count.Other++
		return
	}
	if ts-a.lastSw > int64(a.opt.SweepEvery) {
		if a.lastSw != 0 {
			a.cache.Sweep(ts)
		}
		a.lastSw = ts
	}
	res := a.cache.Process(p, length, ts)
	if res.Verdict.Class == heuristics.Null && a.opt.Inner != nil {
		var in heuristics.Inner
		if heuristics.Decapsulate(&res.Verdict, p, &in) {
			if err := a.opt.Inner.Write(p, &in, ts); err != nil && a.err == nil {
				a.err = err
			}
			a.count.InnerWritten++
		}
	}
}

// onEvent turns cache events into records. It runs inside Process, with the
// packet that caused the event in a.pkt.
func (a *Analyzer) onEvent(e flowcache.Event) {
	r := &a.rec
	*r = verdictlog.Record{Time: time.Unix(0, e.Time), Key: e.Key, Flow: &e.Flow, Reason: e.Reason, Evicted: e.Evicted}
	switch e.Type {
	case flowcache.EventDecided:
		r.Action = verdictlog.ActionVerdict
		if e.Flow.Verdict.Class == heuristics.Null {
			var in heuristics.Inner
			if a.pkt.Kind == packet.KindESP || a.pkt.Kind == packet.KindWESP {
				if heuristics.Decapsulate(&e.Flow.Verdict, &a.pkt, &in) {
					in.Datagram = nil // the packet's bytes do not outlive it
					a.inner[e.Key] = in
					r.Inner = &in
				}
			}
		}
	case flowcache.EventRevoked:
		r.Action = verdictlog.ActionRevoked
		delete(a.inner, e.Key)
	case flowcache.EventExpired:
		r.Action = verdictlog.ActionFlowEnd
		if in, ok := a.inner[e.Key]; ok {
			r.Inner = &in
			delete(a.inner, e.Key)
		}
		a.summary.add(&e.Flow)
	default:
		return
	}
	a.write(r)
}

func (a *Analyzer) write(r *verdictlog.Record) {
	if a.opt.Log == nil || a.err != nil {
		return
	}
	if err := a.opt.Log.Write(r); err != nil {
		a.err = fmt.Errorf("replay: write verdict log: %w", err)
	}
}

// Finish ends every flow still in the cache, writing a flow-end record for
// each (unknown where undecided), in order of first packet. A record's time
// is its flow's last packet.
func (a *Analyzer) Finish() error {
	type ended struct {
		k flowcache.Key
		f flowcache.Flow
	}
	var all []ended
	a.cache.Range(func(k flowcache.Key, f *flowcache.Flow) bool {
		all = append(all, ended{k, *f})
		return true
	})
	sortFlows(all, func(e ended) (int64, flowcache.Key) { return e.f.First, e.k })
	for i := range all {
		e := &all[i]
		r := verdictlog.Record{Action: verdictlog.ActionFlowEnd, Time: time.Unix(0, e.f.Last), Key: e.k, Flow: &e.f}
		if in, ok := a.inner[e.k]; ok {
			r.Inner = &in
		}
		a.summary.add(&e.f)
		a.write(&r)
	}
	return a.err
}
