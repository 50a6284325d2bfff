package espsynth_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"

	"github.com/espy-dpi/espy/espsynth"
)

// Write a capture of two explicitly configured sessions plus a little
// background traffic, with their labels.
func ExampleGenerator_WritePcap() {
	g, err := espsynth.NewGenerator(1, espsynth.Config{
		Flows: []espsynth.Flow{
			{ // ESP-NULL with HMAC-SHA1-96, transport mode, over IPv4
				Initiator: netip.MustParseAddr("192.0.2.10"),
				Responder: netip.MustParseAddr("198.51.100.20"),
				SPI:       [2]uint32{0x1001, 0x2001},
				Auth:      espsynth.AuthHMACSHA1,
				Traffic:   espsynth.TrafficHTTP,
				Packets:   20,
			},
			{ // AES-GCM-16 in UDP behind a NAT, tunnel mode, IPv6 inside
				Initiator: netip.MustParseAddr("203.0.113.5"),
				Responder: netip.MustParseAddr("198.51.100.9"),
				SPI:       [2]uint32{0x3001, 0x4001},
				Encap:     espsynth.EncapUDP,
				NAT:       true,
				Mode:      espsynth.Tunnel,
				Inner:     espsynth.IPv6,
				Cipher:    espsynth.CipherAESGCM,
				Traffic:   espsynth.TrafficDNS,
				Packets:   10,
			},
		},
		Background: 0.1,
	})
	if err != nil {
		panic(err)
	}
	var pcap, labels bytes.Buffer
	if err := g.WritePcap(&pcap, &labels, "example.pcap"); err != nil {
		panic(err)
	}
	for _, l := range g.Labels("example.pcap") {
		fmt.Println(l.Src, l.Dst, l.SPI, l.Verdict, l.Cipher, l.Auth, l.ICVLen, l.Mode, l.Inner, l.Packets)
	}
	// Output:
	// 192.0.2.10 198.51.100.20 4097 null NULL HMAC-SHA1-96 12 transport tcp 11
	// 198.51.100.20 192.0.2.10 8193 null NULL HMAC-SHA1-96 12 transport tcp 9
	// 203.0.113.5 198.51.100.9 12289 encrypted AES-GCM AEAD 16 tunnel ipv6/udp 5
	// 198.51.100.9 203.0.113.5 16385 encrypted AES-GCM AEAD 16 tunnel ipv6/udp 5
}

// Stream frames through one reused buffer, as a benchmark harness would.
func ExampleGenerator_AppendPacket() {
	g, err := espsynth.NewGenerator(7, espsynth.Config{NumFlows: 50, Packets: 100000})
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 0, 2048)
	frames := 0
	for {
		frame, _, err := g.AppendPacket(buf[:0])
		if err == io.EOF {
			break
		}
		frames++
		buf = frame
	}
	fmt.Println(frames, "frames,", len(g.Labels("")), "flows")
	// Output: 100000 frames, 50 flows
}
