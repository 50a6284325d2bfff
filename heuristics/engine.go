package heuristics

import (
	"time"

	"github.com/espy-dpi/espy/packet"
)

// Config tunes the engine. The zero value of a field means its default.
type Config struct {
	// Threshold is the evidence, in bits, a candidate needs for a null
	// verdict. Default 40: random bytes reach it on one candidate with a
	// chance of at most 2^-40 per packet, so over the 14 candidates of
	// the first 4 packets of a million new encrypted flows per second the
	// expected time to one false null verdict is over four hours, and a
	// false verdict is still withdrawn by revocation.
	Threshold int
	// Margin is how many bits the winning candidate must lead every
	// other by. Default 8.
	Margin int
	// EncryptedAfter is how many packets must go by with no candidate
	// surviving, and ESP sequence numbers increasing, before a flow is
	// called encrypted. Default 2.
	EncryptedAfter int
	// MaxPackets is how many packets a flow gets before the engine gives
	// up and calls it unknown. Default 16, at most 255.
	MaxPackets int
	// Revocation tunes the withdrawal of null verdicts.
	Revocation Revocation
	// RekeyEntries sizes the table of inner flows of null flows that
	// lets a rekeyed SA be decided at once (a power of two; default
	// 16384; negative disables the shortcut).
	RekeyEntries int
}

// Revocation follows RFC 5879 section 4.3: a null verdict is withdrawn when
// at least FastRate of a flow's packets in FastWindow, or more than SlowRate
// in SlowWindow, fail its parse, and at least MinBad packets failed. Packets
// whose sequence number lies more than ReplayWindow below the highest good
// one are not counted, as the receiver drops them too.
type Revocation struct {
	FastWindow   time.Duration // default 1 s
	FastRate     float64       // default 0.5
	SlowWindow   time.Duration // default 10 s
	SlowRate     float64       // default 0.95
	MinBad       int           // default 16
	ReplayWindow uint32        // default 64
}

func (c *Config) setDefaults() {
	if c.Threshold == 0 {
		c.Threshold = 40
	}
	if c.Margin == 0 {
		c.Margin = 8
	}
	if c.EncryptedAfter == 0 {
		c.EncryptedAfter = 2
	}
	if c.MaxPackets == 0 {
		c.MaxPackets = 16
	}
	c.MaxPackets = min(c.MaxPackets, 255)
	r := &c.Revocation
	if r.FastWindow == 0 {
		r.FastWindow = time.Second
	}
	if r.FastRate == 0 {
		r.FastRate = 0.5
	}
	if r.SlowWindow == 0 {
		r.SlowWindow = 10 * time.Second
	}
	if r.SlowRate == 0 {
		r.SlowRate = 0.95
	}
	if r.MinBad == 0 {
		r.MinBad = 16
	}
	if r.ReplayWindow == 0 {
		r.ReplayWindow = 64
	}
	if c.RekeyEntries == 0 {
		c.RekeyEntries = 1 << 14
	}
}

// Engine holds the configuration and the state shared between flows (the
// rekey table). It is safe for concurrent use; per-flow state is the
// caller's, one FlowState or Monitor per flow, used by one goroutine at a
// time.
type Engine struct {
	cfg   Config
	rekey *rekeyTable
}

// New returns an engine with cfg, defaults filled in.
func New(cfg Config) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg}
	if cfg.RekeyEntries > 0 {
		e.rekey = newRekeyTable(cfg.RekeyEntries)
	}
	return e
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// candState is the running evidence for one candidate of one flow.
type candState struct {
	score  uint16
	pass   uint8
	fail   uint8
	nh     uint8 // last next header other than 59
	ev     Evidence
	tuple  uint32
	tcpSeq uint32
}

func (c *candState) alive() bool { return c.pass > 0 && int(c.fail)*4 <= int(c.pass) }

// FlowState is the evidence gathered on an undecided flow.
type FlowState struct {
	cands     [nCandidates]candState
	packets   uint8
	seqUp     uint8
	lastSeq   uint32
	unknownNH uint8
}

// Packets returns how many packets the state has seen.
func (s *FlowState) Packets() int { return int(s.packets) }

// Observe adds packet p (KindESP or KindWESP) to the flow's evidence. It
// returns the verdict and whether it is final: a final verdict is null,
// encrypted, or unknown once MaxPackets went by without a decision.
func (e *Engine) Observe(s *FlowState, p *packet.Packet) (Verdict, bool) {
	if s.packets < 0xff {
		s.packets++
	}
	seq := p.Seq()
	if s.packets > 1 && seq > s.lastSeq && seq-s.lastSeq < 1<<16 {
		s.seqUp = satInc(s.seqUp)
	}
	s.lastSeq = seq
	if p.Kind == packet.KindWESP {
		return e.wesp(s, p), true
	}

	ph := outerPseudo(p)
	var t trailer
	for i, c := range candidates {
		cs := &s.cands[i]
		if !readTrailer(p.ESP, c, &t) {
			cs.fail = satInc(cs.fail)
			continue
		}
		if !knownNextHeader(t.nh) {
			if t.padLen > 0 {
				s.unknownNH = satInc(s.unknownNH)
			}
			cs.fail = satInc(cs.fail)
			continue
		}
		var r inner
		if len(t.payload) < minInner(t.nh) || !checkInner(t.nh, t.payload, ph, &r) {
			cs.fail = satInc(cs.fail)
			continue
		}
		bits := structureBits(t.padLen) + r.bits
		ev := r.ev | EvNextHeader
		if t.padLen > 0 {
			ev |= EvPad
		}
		if r.tuple != 0 {
			if r.tuple == cs.tuple {
				bits += bitsContinuity
				ev |= EvContinuity
				if r.isTCP && r.tcpSeq-cs.tcpSeq < 1<<24 && r.tcpSeq != cs.tcpSeq {
					bits += bitsTCPSeq
					ev |= EvTCPSequence
				}
			}
			cs.tuple, cs.tcpSeq = r.tuple, r.tcpSeq
			if e.rekey != nil && e.rekey.match(p, r.tuple, c) {
				cs.score = satAdd(cs.score, bits)
				cs.pass = satInc(cs.pass)
				cs.ev |= ev | EvRekey
				if t.nh != 59 {
					cs.nh = t.nh
				}
				return e.null(s, i, SourceRekey), true
			}
		}
		cs.score = satAdd(cs.score, bits)
		cs.pass = satInc(cs.pass)
		cs.ev |= ev
		if t.nh != 59 || cs.nh == 0 {
			cs.nh = t.nh
		}
	}
	return e.decide(s)
}

func (e *Engine) decide(s *FlowState) (Verdict, bool) {
	best, runner := -1, 0
	anyAlive := false
	for i := range s.cands {
		cs := &s.cands[i]
		if !cs.alive() {
			continue
		}
		anyAlive = true
		if best < 0 || cs.score > s.cands[best].score {
			if best >= 0 {
				runner = max(runner, int(s.cands[best].score))
			}
			best = i
		} else {
			runner = max(runner, int(cs.score))
		}
	}
	if best >= 0 {
		sc := int(s.cands[best].score)
		if sc >= e.cfg.Threshold && sc >= runner+e.cfg.Margin {
			return e.null(s, best, SourceHeuristic), true
		}
	}
	n := int(s.packets)
	if !anyAlive && s.unknownNH == 0 && n >= e.cfg.EncryptedAfter && int(s.seqUp)*2 >= n-1 {
		v := Verdict{Class: Encrypted, Source: SourceHeuristic, Packets: s.packets}
		if s.seqUp > 0 {
			v.Evidence |= EvSeqIncreasing
		}
		return v, true
	}
	v := Verdict{Class: Unknown, Source: SourceHeuristic, Packets: s.packets}
	if s.unknownNH > 0 {
		v.Evidence |= EvUnknownNextHeader
	}
	if best >= 0 {
		v.Score = score8(s.cands[best].score)
	}
	return v, n >= e.cfg.MaxPackets
}

func (e *Engine) null(s *FlowState, i int, src Source) Verdict {
	cs := &s.cands[i]
	c := candidates[i]
	v := Verdict{
		Class:      Null,
		Source:     src,
		Mode:       modeOf(cs.nh),
		ICVLen:     c.icv,
		IVLen:      c.iv,
		NextHeader: cs.nh,
		Packets:    s.packets,
		Score:      score8(cs.score),
		Evidence:   cs.ev,
	}
	if s.seqUp > 0 {
		v.Evidence |= EvSeqIncreasing
	}
	return v
}

func modeOf(nh uint8) Mode {
	switch nh {
	case 4, 41:
		return ModeTunnel
	case 59, 0:
		return ModeUnknown
	}
	return ModeTransport
}

// wesp decides a WESP flow from its explicit header, cross-checked against
// the ESP trailer it describes.
func (e *Engine) wesp(s *FlowState, p *packet.Packet) Verdict {
	w := p.WESP
	v := Verdict{Source: SourceWESP, Packets: s.packets, Evidence: EvWESP}
	if w.Encrypted() {
		v.Class = Encrypted
		return v
	}
	iv := w.IVLen()
	var t trailer
	if iv > 255 || !readTrailer(p.ESP, candidate{uint8(iv), w.TrlLen}, &t) || t.nh != w.NextHeader {
		v.Class = Unknown
		v.Evidence = EvWESPMismatch
		return v
	}
	v.Class = Null
	v.ICVLen, v.IVLen, v.NextHeader = w.TrlLen, uint8(iv), t.nh
	v.Mode = modeOf(t.nh)
	return v
}

func outerPseudo(p *packet.Packet) pseudo {
	h := p.IPHeader
	if p.IsIPv6() {
		return pseudo{src: h[8:24], dst: h[24:40]}
	}
	return pseudo{src: h[12:16], dst: h[16:20]}
}

func score8(x uint16) uint8 { return uint8(min(x, 0xff)) }

func satInc(x uint8) uint8 {
	if x == 0xff {
		return x
	}
	return x + 1
}

func satAdd(x uint16, n int) uint16 {
	if int(x)+n > 0xffff {
		return 0xffff
	}
	return x + uint16(n)
}
