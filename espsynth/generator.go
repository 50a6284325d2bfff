package espsynth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Config says what a Generator produces.
type Config struct {
	// Flows lists the sessions to generate. When it is empty, NumFlows ESP
	// flows are drawn at random (see DrawFlows).
	Flows []Flow
	// NumFlows is the number of ESP flows (SAs) to draw when Flows is empty.
	NumFlows int
	// Packets is the number of ESP packets spread over the drawn flows.
	Packets int
	// Background is the share of frames, from 0 to 0.9, that are non-ESP
	// traffic: plain TCP and UDP, IKE on UDP 500, IKE behind the non-ESP
	// marker on UDP 4500, and NAT-T keepalives. None of it is labelled.
	Background float64
	// Start is the timestamp of the first frame; zero means
	// 2026-01-01T00:00:00Z.
	Start time.Time
	// VLAN, if not zero, puts an 802.1Q tag with this VLAN ID (1 to 4094)
	// on every frame.
	VLAN uint16
}

// Generator produces the frames of a Config, interleaving its flows at
// random. It is not safe for concurrent use.
type Generator struct {
	r        *rand.Rand
	sessions []*session
	active   []*session
	bg       *background
	bgShare  float64
	ts       time.Time
	left     int // ESP packets still to send
	frames   int
	last     PacketInfo
}

// PacketInfo is the ground truth of one frame: what a classifier should
// find in it.
type PacketInfo struct {
	// ESP is false for background frames, whose other fields are zero.
	ESP bool
	// Src, Dst and SPI identify the flow, as in its Label.
	Src, Dst netip.Addr
	SPI      uint32
	// Seq is the ESP sequence number.
	Seq uint32
	// ESPOffset is where the ESP header (the SPI) starts in the slice
	// AppendPacket returned: in the frame, when dst was empty.
	ESPOffset int
	// IVLen and ICVLen are the lengths of the IV after the sequence number
	// and of the ICV at the end of the frame.
	IVLen, ICVLen int
	// PadLen and NextHeader are the values of the ESP trailer, readable on
	// the wire only when Cleartext.
	PadLen     int
	NextHeader uint8
	// Cleartext reports NULL encryption or ENCR_NULL_AUTH_AES_GMAC.
	Cleartext bool
}

// NewGenerator returns a generator for cfg whose output depends only on
// seed and cfg.
func NewGenerator(seed int64, cfg Config) (*Generator, error) {
	r := rand.New(rand.NewPCG(uint64(seed), 0x65737073796e7468)) // "espsynth"
	flows := cfg.Flows
	if len(flows) == 0 {
		var err error
		if flows, err = DrawFlows(r, cfg.NumFlows, cfg.Packets); err != nil {
			return nil, err
		}
	}
	if cfg.Background < 0 || cfg.Background > 0.9 {
		return nil, fmt.Errorf("espsynth: background share %v is outside [0, 0.9]", cfg.Background)
	}
	if cfg.VLAN > 4094 {
		return nil, fmt.Errorf("espsynth: VLAN ID %d is outside 1 to 4094", cfg.VLAN)
	}
	g := &Generator{r: r, bgShare: cfg.Background, ts: cfg.Start}
	if g.ts.IsZero() {
		g.ts = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	taken := make(map[flowKey]bool)
	for i, f := range flows {
		s, err := newSession(r, f, taken)
		if err != nil {
			return nil, fmt.Errorf("espsynth: flow %d: %w", i, err)
		}
		g.sessions = append(g.sessions, s)
		g.left += s.remaining
	}
	g.active = append([]*session(nil), g.sessions...)
	if g.bgShare > 0 {
		g.bg = newBackground(r)
	}
	if cfg.VLAN != 0 {
		for _, s := range g.sessions {
			s.path[0].vlan, s.path[1].vlan = cfg.VLAN, cfg.VLAN
		}
		if g.bg != nil {
			for _, c := range g.bg.convs {
				c.path[0].vlan, c.path[1].vlan = cfg.VLAN, cfg.VLAN
			}
		}
	}
	return g, nil
}

// Remaining is the number of ESP packets not yet produced.
func (g *Generator) Remaining() int { return g.left }

// AppendPacket appends the next Ethernet frame to dst and returns it with
// its capture timestamp. After the last ESP packet it returns io.EOF. With
// a dst of sufficient capacity it does not allocate, so millions of frames
// can be streamed through one buffer.
func (g *Generator) AppendPacket(dst []byte) ([]byte, time.Time, error) {
	if g.left == 0 {
		return dst, time.Time{}, io.EOF
	}
	// Gaps of up to 100 µs keep timestamps strictly increasing at
	// microsecond resolution.
	g.ts = g.ts.Add(time.Duration(1+g.r.IntN(100)) * time.Microsecond)
	g.frames++
	if g.bg != nil && g.r.Float64() < g.bgShare {
		g.last = PacketInfo{}
		return g.bg.appendPacket(dst, g.r), g.ts, nil
	}
	i := g.r.IntN(len(g.active))
	s := g.active[i]
	dst = s.appendPacket(dst, g.r, &g.last)
	if s.remaining == 0 {
		g.active[i] = g.active[len(g.active)-1]
		g.active = g.active[:len(g.active)-1]
	}
	g.left--
	return dst, g.ts, nil
}

// LastInfo describes the frame the latest AppendPacket call produced.
func (g *Generator) LastInfo() PacketInfo { return g.last }

// Labels returns one Label per ESP flow that has sent packets so far, in
// flow order, naming pcapName as their capture file.
func (g *Generator) Labels(pcapName string) []Label {
	var out []Label
	for _, s := range g.sessions {
		out = append(out, s.labels(pcapName)...)
	}
	return out
}

// SAs returns the keys of every SA so far, in flow order, for verifying or
// decrypting the generated traffic. Rekeys add SAs as packets are
// produced, so call it after the last packet to have them all.
func (g *Generator) SAs() []SA {
	var out []SA
	for _, s := range g.sessions {
		for _, a := range s.sas() {
			out = append(out, a.SA)
		}
	}
	return out
}

// WritePcap writes all remaining frames to w as a classic pcap file
// (microsecond timestamps, Ethernet link type), then the flows' labels to
// labels as JSON lines, naming pcapName as their capture file. labels may
// be nil.
func (g *Generator) WritePcap(w io.Writer, labels io.Writer, pcapName string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	pw, err := newPcapWriter(bw)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 4096)
	for {
		frame, ts, err := g.AppendPacket(buf[:0])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := pw.writePacket(ts, frame); err != nil {
			return err
		}
		buf = frame
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("espsynth: writing pcap: %w", err)
	}
	if labels == nil {
		return nil
	}
	lw := bufio.NewWriter(labels)
	if err := WriteLabels(lw, g.Labels(pcapName)); err != nil {
		return err
	}
	if err := lw.Flush(); err != nil {
		return fmt.Errorf("espsynth: writing labels: %w", err)
	}
	return nil
}

// Frames is the number of frames, ESP and background, produced so far.
func (g *Generator) Frames() int { return g.frames }
