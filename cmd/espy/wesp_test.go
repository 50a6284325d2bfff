package main

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/packet"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// wespCapture writes a capture of WESP (RFC 5840) flows made by wrapping
// generated ESP flows: a NULL flow, an encrypted one (E bit), and a NULL flow
// in UDP 4500 behind the WESP protocol identifier.
func wespCapture(t *testing.T) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "wesp.pcap")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	flows := []struct {
		flow      espsynth.Flow
		icv       int
		encrypted bool
	}{
		{espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA256, Packets: 5, Traffic: espsynth.TrafficDNS, OneWay: true}, 16, false},
		{espsynth.Flow{Cipher: espsynth.CipherAESGCM, Packets: 5, Traffic: espsynth.TrafficHTTP, OneWay: true}, 16, true},
		{espsynth.Flow{Cipher: espsynth.CipherNULL, Auth: espsynth.AuthHMACSHA1, Encap: espsynth.EncapUDP, Packets: 5, Traffic: espsynth.TrafficICMP, OneWay: true}, 12, false},
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, fl := range flows {
		g, err := espsynth.NewGenerator(int64(40+i), espsynth.Config{Flows: []espsynth.Flow{fl.flow}})
		if err != nil {
			t.Fatal(err)
		}
		for {
			frame, _, err := g.AppendPacket(nil)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var d packet.Decoder
			var p packet.Packet
			if err := d.Decode(packet.LinkTypeEthernet, frame, &p); err != nil || p.Kind != packet.KindESP {
				t.Fatalf("generated frame: %v %v", err, p.Kind)
			}
			esp := p.ESP
			nh := esp[len(esp)-fl.icv-1]
			hdr := []byte{nh, 4 + 8, byte(fl.icv), 0}
			if fl.encrypted {
				hdr = []byte{0, 4 + 8 + 8, byte(fl.icv), packet.WESPFlagEncrypted}
			}
			var payload []byte
			proto := byte(packet.ProtoWESP)
			if p.Encap == packet.EncapUDP {
				proto = packet.ProtoUDP
				payload = make([]byte, 8, 8+4+len(hdr)+len(esp))
				binary.BigEndian.PutUint16(payload[0:], p.SrcPort)
				binary.BigEndian.PutUint16(payload[2:], p.DstPort)
				payload = append(payload, 0, 0, 0, 2)
			}
			payload = append(payload, hdr...)
			payload = append(payload, esp...)
			if proto == packet.ProtoUDP {
				binary.BigEndian.PutUint16(payload[4:], uint16(len(payload)))
			}
			ip := make([]byte, 20, 20+len(payload))
			copy(ip, p.IPHeader[:20])
			ip[0] = 0x45
			ip[9] = proto
			binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
			ip[10], ip[11] = 0, 0
			var s uint32
			for j := 0; j < 20; j += 2 {
				s += uint32(binary.BigEndian.Uint16(ip[j:]))
			}
			s = s&0xffff + s>>16
			s = s&0xffff + s>>16
			binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
			ip = append(ip, payload...)
			ts = ts.Add(time.Millisecond)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(ip), Length: len(ip)}, ip); err != nil {
				t.Fatal(err)
			}
		}
	}
	return name
}
