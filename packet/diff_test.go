package packet_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/capture"
	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/packet"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// refPacket is what gopacket's layer decoders say about a frame, reduced to
// what packet.Decoder reports.
type refPacket struct {
	ok       bool // an IP packet gopacket decoded
	src, dst netip.Addr
	kind     packet.Kind
	encap    packet.Encap
	sport    uint16
	dport    uint16
	spi      uint32
	espLen   int
	vlans    int
}

// reference decodes frame with gopacket. UDP port 4500 payloads are
// classified by RFC 3948 by hand, as gopacket leaves them undecoded.
func reference(lt layers.LinkType, frame []byte) refPacket {
	var r refPacket
	pkt := gopacket.NewPacket(frame, lt, gopacket.NoCopy)
	for _, l := range pkt.Layers() {
		if l.LayerType() == layers.LayerTypeDot1Q {
			r.vlans++
		}
	}
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		r.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		r.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			r.ok, r.kind = true, packet.KindFragment
			return r
		}
	case *layers.IPv6:
		r.src, _ = netip.AddrFromSlice(ip.SrcIP)
		r.dst, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return r
	}
	r.ok = true
	if l := pkt.Layer(layers.LayerTypeIPSecESP); l != nil {
		esp := l.(*layers.IPSecESP)
		r.kind, r.spi, r.espLen = packet.KindESP, esp.SPI, len(esp.Contents)
		return r
	}
	if l := pkt.Layer(layers.LayerTypeUDP); l != nil {
		u := l.(*layers.UDP)
		if u.SrcPort != 4500 && u.DstPort != 4500 {
			return r
		}
		r.encap, r.sport, r.dport = packet.EncapUDP, uint16(u.SrcPort), uint16(u.DstPort)
		pl := u.Payload
		switch {
		case len(pl) == 1 && pl[0] == 0xff:
			r.kind = packet.KindKeepalive
		case len(pl) >= 4 && binary.BigEndian.Uint32(pl) == 0:
			r.kind = packet.KindIKE
		case len(pl) >= 8:
			r.kind, r.spi, r.espLen = packet.KindESP, binary.BigEndian.Uint32(pl), len(pl)
		}
	}
	return r
}

// synthCapture is a deterministic espsynth capture: every flow shape the
// generator draws, with a third of the frames non-ESP background.
func synthCapture(tb testing.TB, seed int64, flows, packets int) []byte {
	tb.Helper()
	g, err := espsynth.NewGenerator(seed, espsynth.Config{NumFlows: flows, Packets: packets, Background: 0.3})
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := g.WritePcap(&buf, nil, "synth.pcap"); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// readFrames reads every frame of a capture with the project's reader.
func readFrames(tb testing.TB, name string, data []byte) (frames [][]byte, lts []uint16) {
	tb.Helper()
	r, err := capture.NewReader(name, bytes.NewReader(data))
	if err != nil {
		tb.Fatal(err)
	}
	for {
		p, err := r.Next()
		if err == io.EOF {
			return frames, lts
		}
		if err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, bytes.Clone(p.Data))
		lts = append(lts, p.LinkType)
	}
}

// vlanTagged inserts an 802.1Q tag into an Ethernet frame.
func vlanTagged(frame []byte, id uint16) []byte {
	out := append([]byte{}, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, 0x8100)
	out = binary.BigEndian.AppendUint16(out, id)
	return append(out, frame[12:]...)
}

// asSLL turns an Ethernet frame into a Linux cooked (v1) frame.
func asSLL(frame []byte) []byte {
	return sll(binary.BigEndian.Uint16(frame[12:]), frame[14:])
}

func TestDifferentialGopacket(t *testing.T) {
	type source struct {
		name string
		data []byte
	}
	sources := []source{{"synth-1", synthCapture(t, 1, 80, 2000)}, {"synth-2", synthCapture(t, 7, 40, 800)}}
	// The repository's sample capture, when present, is checked too.
	if data, err := os.ReadFile(filepath.Join("..", "testdata", "sample.pcap")); err == nil {
		sources = append(sources, source{"sample.pcap", data})
	} else {
		t.Logf("../testdata/sample.pcap not read (%v); generated captures only", err)
	}
	var d packet.Decoder
	var p packet.Packet
	for _, src := range sources {
		frames, lts := readFrames(t, src.name, src.data)
		counts := map[packet.Kind]int{}
		compared := 0
		for i, frame := range frames {
			if lts[i] != uint16(packet.LinkTypeEthernet) {
				t.Fatalf("%s #%d: link type %d", src.name, i, lts[i])
			}
			variants := []struct {
				name string
				lt   packet.LinkType
				glt  layers.LinkType
				f    []byte
			}{
				{"ethernet", packet.LinkTypeEthernet, layers.LinkTypeEthernet, frame},
				{"vlan", packet.LinkTypeEthernet, layers.LinkTypeEthernet, vlanTagged(frame, 42)},
				{"sll", packet.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL, asSLL(frame)},
			}
			for _, v := range variants {
				ref := reference(v.glt, v.f)
				err := d.Decode(v.lt, v.f, &p)
				if !ref.ok {
					if err == nil {
						t.Errorf("%s #%d %s: gopacket found no IP, espy decoded %+v", src.name, i, v.name, p)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s #%d %s: %v (gopacket: %+v)", src.name, i, v.name, err, ref)
					continue
				}
				compared++
				counts[p.Kind]++
				if p.Src != ref.src || p.Dst != ref.dst {
					t.Errorf("%s #%d %s: addresses %v→%v, gopacket %v→%v", src.name, i, v.name, p.Src, p.Dst, ref.src, ref.dst)
				}
				if p.Kind != ref.kind || p.Encap != ref.encap || p.SrcPort != ref.sport || p.DstPort != ref.dport {
					t.Errorf("%s #%d %s: %v %v %d→%d, gopacket %v %v %d→%d", src.name, i, v.name,
						p.Kind, p.Encap, p.SrcPort, p.DstPort, ref.kind, ref.encap, ref.sport, ref.dport)
				}
				if p.VLANs != ref.vlans {
					t.Errorf("%s #%d %s: %d VLAN tags, gopacket %d", src.name, i, v.name, p.VLANs, ref.vlans)
				}
				if p.Kind == packet.KindESP && (p.SPI() != ref.spi || len(p.ESP) != ref.espLen) {
					t.Errorf("%s #%d %s: SPI %#x len %d, gopacket SPI %#x len %d", src.name, i, v.name, p.SPI(), len(p.ESP), ref.spi, ref.espLen)
				}
			}
		}
		t.Logf("%s: %d frames, %d decodes compared, kinds %v", src.name, len(frames), compared, counts)
		if counts[packet.KindESP] < 3*len(frames)/2 { // three variants of each frame, most of them ESP
			t.Errorf("%s: only %d ESP decodes of %d frames", src.name, counts[packet.KindESP], len(frames))
		}
		if counts[packet.KindOther] == 0 {
			t.Errorf("%s: no background frame compared", src.name)
		}
	}
}

// ipEnd is the offset in frame of the end of the outer IP datagram of p.
func ipEnd(frame []byte, p *packet.Packet) int {
	for off := 0; off < len(frame); off++ {
		if &frame[off] == &p.IPHeader[0] {
			if p.IsIPv6() {
				return off + 40 + int(binary.BigEndian.Uint16(p.IPHeader[4:]))
			}
			return off + int(binary.BigEndian.Uint16(p.IPHeader[2:]))
		}
	}
	panic("IPHeader outside the frame")
}

// TestTruncation decodes every prefix of valid frames: a prefix that cuts
// the IP datagram must be ErrTruncated, one that keeps it (cutting only
// link-layer padding) must decode exactly as the whole frame.
func TestTruncation(t *testing.T) {
	type frameCase struct {
		name  string
		lt    packet.LinkType
		frame []byte
		setup func(*packet.Decoder)
	}
	var cases []frameCase
	for _, tc := range decodeCases(t) {
		if tc.want.err == nil && tc.name != "ipv6/jumbo-zero-length" {
			cases = append(cases, frameCase{tc.name, tc.lt, tc.frame, tc.setup})
		}
	}
	frames, _ := readFrames(t, "synth", synthCapture(t, 3, 12, 60))
	for i, f := range frames {
		cases = append(cases, frameCase{"synth-" + string(rune('a'+i%26)), packet.LinkTypeEthernet, f, nil})
	}
	total := 0
	for _, tc := range cases {
		var d packet.Decoder
		if tc.setup != nil {
			tc.setup(&d)
		}
		var full, p packet.Packet
		if err := d.Decode(tc.lt, tc.frame, &full); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		end := ipEnd(tc.frame, &full)
		for n := 0; n < len(tc.frame); n++ {
			prefix := bytes.Clone(tc.frame[:n])
			prefix = prefix[:n:n]
			err := d.Decode(tc.lt, prefix, &p)
			total++
			if n < end {
				if err != packet.ErrTruncated {
					t.Errorf("%s: prefix %d of %d (IP ends at %d): err %v, want ErrTruncated", tc.name, n, len(tc.frame), end, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: prefix %d keeps the datagram: %v", tc.name, n, err)
				continue
			}
			if p.Kind != full.Kind || !bytes.Equal(p.ESP, full.ESP) || p.Src != full.Src || p.SrcPort != full.SrcPort || len(p.IPHeader) != len(full.IPHeader) {
				t.Errorf("%s: prefix %d decodes as %+v, whole frame as %+v", tc.name, n, p, full)
			}
		}
	}
	t.Logf("%d frames, %d prefixes", len(cases), total)
}

// FuzzDecode checks that no frame panics the decoder, that errors are the
// documented sentinels and that a decoded ESP packet lies inside the frame.
// Its seeds, in testdata/fuzz/FuzzDecode, are the frames of decodeCases.
func FuzzDecode(f *testing.F) {
	sentinels := []error{packet.ErrTruncated, packet.ErrUnsupportedLinkType, packet.ErrNotIP, packet.ErrBadIPHeader,
		packet.ErrTooManyVLANs, packet.ErrTooManyExtHeaders, packet.ErrBadESP, packet.ErrBadWESP}
	var plain, tcp packet.Decoder
	tcp.AddTCPPort(4500)
	tcp.AddTCPPort(443)
	tcp.AddUDPPort(10500)
	f.Fuzz(func(t *testing.T, lt uint16, frame []byte) {
		frame = bytes.Clone(frame)
		frame = frame[:len(frame):len(frame)]
		orig := bytes.Clone(frame)
		for _, d := range []*packet.Decoder{&plain, &tcp} {
			var p packet.Packet
			err := d.Decode(packet.LinkType(lt), frame, &p)
			if err != nil {
				known := false
				for _, s := range sentinels {
					known = known || err == s
				}
				if !known {
					t.Fatalf("error %v is not a sentinel", err)
				}
				continue
			}
			if !bytes.Equal(frame, orig) {
				t.Fatal("Decode wrote to the frame")
			}
			if p.IPHeader == nil || !within(frame, p.IPHeader) {
				t.Fatalf("IPHeader outside the frame: %+v", p)
			}
			if !p.Src.IsValid() || p.Src.Is6() != p.Dst.Is6() {
				t.Fatalf("addresses %v %v", p.Src, p.Dst)
			}
			switch p.Kind {
			case packet.KindESP, packet.KindWESP:
				if len(p.ESP) < 8 {
					t.Fatalf("%v with %d ESP bytes", p.Kind, len(p.ESP))
				}
				if !within(frame, p.ESP) {
					t.Fatalf("ESP outside the frame")
				}
				_, _ = p.SPI(), p.Seq()
				if p.Kind == packet.KindWESP && p.WESP.IVLen() < 0 {
					t.Fatalf("WESP with negative IV length: %+v", p.WESP)
				}
			default:
				if p.ESP != nil {
					t.Fatalf("%v with ESP bytes", p.Kind)
				}
			}
			var again packet.Packet
			if err := d.Decode(packet.LinkType(lt), frame, &again); err != nil || !samePacket(&p, &again) {
				t.Fatalf("second decode differs: %v %+v vs %+v", err, again, p)
			}
		}
	})
}

func samePacket(a, b *packet.Packet) bool {
	return a.Kind == b.Kind && a.Src == b.Src && a.Dst == b.Dst && a.Encap == b.Encap && a.SrcPort == b.SrcPort &&
		a.DstPort == b.DstPort && a.VLANs == b.VLANs && a.VLAN == b.VLAN && a.WESP == b.WESP &&
		bytes.Equal(a.ESP, b.ESP) && bytes.Equal(a.IPHeader, b.IPHeader)
}
