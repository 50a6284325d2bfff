package espsynth_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/espy-dpi/espy/espsynth"
)

// matrixFlows returns sessions that cover every transform, every traffic
// kind, both modes, both IP versions for outer and inner headers, both
// encapsulations and every padding policy.
func matrixFlows() []espsynth.Flow {
	type transform struct {
		c   espsynth.Cipher
		a   espsynth.Auth
		icv int
	}
	var ts []transform
	for _, c := range []espsynth.Cipher{espsynth.CipherNULL, espsynth.CipherAESCBC, espsynth.CipherAESCTR, espsynth.Cipher3DES} {
		for a := espsynth.AuthNone; a <= espsynth.AuthHMACSHA512; a++ {
			ts = append(ts, transform{c: c, a: a})
		}
	}
	ts = append(ts,
		transform{c: espsynth.CipherNullAuthAESGMAC},
		transform{c: espsynth.CipherAESGCM, icv: 8},
		transform{c: espsynth.CipherAESGCM, icv: 12},
		transform{c: espsynth.CipherAESGCM, icv: 16},
		transform{c: espsynth.CipherChaCha20Poly1305},
	)
	var flows []espsynth.Flow
	i := 0
	// Every transform in both modes, with the other dimensions cycling.
	for _, tr := range ts {
		for _, mode := range []espsynth.Mode{espsynth.Transport, espsynth.Tunnel} {
			f := espsynth.Flow{
				Outer:   []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[i%2],
				Encap:   espsynth.Encap((i / 2) % 2),
				Mode:    mode,
				Inner:   []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[(i/4)%2],
				Traffic: espsynth.Traffic(i % 9),
				Cipher:  tr.c,
				Auth:    tr.a,
				ICVLen:  tr.icv,
				Padding: espsynth.Padding(i % 3),
				Packets: 12,
			}
			if f.Padding == espsynth.PaddingTFC && mode != espsynth.Tunnel {
				f.Padding = espsynth.PaddingExtra
			}
			f.NAT = f.Encap == espsynth.EncapUDP && i%3 == 0
			f.Dummy = f.Padding == espsynth.PaddingTFC
			flows = append(flows, f)
			i++
		}
	}
	// Every traffic kind over every mode and IP version, in cleartext.
	for tr := espsynth.TrafficHTTP; tr <= espsynth.TrafficMixed; tr++ {
		for _, outer := range []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6} {
			for _, inner := range []espsynth.IPVersion{0, espsynth.IPv4, espsynth.IPv6} {
				f := espsynth.Flow{Outer: outer, Traffic: tr, Auth: espsynth.AuthHMACSHA1, Packets: 20}
				if inner != 0 {
					f.Mode, f.Inner = espsynth.Tunnel, inner
				}
				flows = append(flows, f)
			}
		}
	}
	flows = append(flows,
		espsynth.Flow{Mode: espsynth.Tunnel, Inner: espsynth.Dual, Traffic: espsynth.TrafficMixed, Auth: espsynth.AuthHMACSHA256, Packets: 30},
		espsynth.Flow{Mode: espsynth.Tunnel, Inner: espsynth.Dual, Traffic: espsynth.TrafficICMP, Cipher: espsynth.CipherAESCBC, Auth: espsynth.AuthHMACSHA1, Packets: 10},
		espsynth.Flow{Outer: espsynth.IPv6, Traffic: espsynth.TrafficTLS, Cipher: espsynth.CipherAESGCM, Packets: 40, Rekeys: 2, Tags: []string{"custom"}},
		espsynth.Flow{Traffic: espsynth.TrafficDNS, Auth: espsynth.AuthHMACSHA1, Packets: 3, Rekeys: 2, OneWay: true},
		espsynth.Flow{Traffic: espsynth.TrafficDNS, Packets: 1, OneWay: true},
		// The largest overhead, with the largest payloads: must fit the MTU.
		espsynth.Flow{Outer: espsynth.IPv6, Encap: espsynth.EncapUDP, Mode: espsynth.Tunnel, Inner: espsynth.IPv6,
			Traffic: espsynth.TrafficTCPBin, Cipher: espsynth.CipherAESCBC, Auth: espsynth.AuthHMACSHA512,
			Padding: espsynth.PaddingExtra, Packets: 300},
		espsynth.Flow{Traffic: espsynth.TrafficHTTP, Cipher: espsynth.CipherAESCBC, Auth: espsynth.AuthHMACSHA256, Packets: 5, OneWay: true},
	)
	return flows
}

// capture is a generated pcap and its labels, read back.
type capture struct {
	pcap   []byte
	frames [][]byte
	labels []espsynth.Label
	sas    map[flowKey]espsynth.SA
}

type flowKey struct {
	src, dst netip.Addr
	spi      uint32
}

func generate(t *testing.T, seed int64, cfg espsynth.Config) *capture {
	t.Helper()
	g, err := espsynth.NewGenerator(seed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pcap, labels bytes.Buffer
	if err := g.WritePcap(&pcap, &labels, "test.pcap"); err != nil {
		t.Fatal(err)
	}
	c := &capture{pcap: bytes.Clone(pcap.Bytes()), sas: map[flowKey]espsynth.SA{}}
	r, err := pcapgo.NewReader(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v", r.LinkType())
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.CaptureLength != len(data) || ci.Length != len(data) {
			t.Fatalf("frame %d: capture length %d, length %d, data %d", len(c.frames), ci.CaptureLength, ci.Length, len(data))
		}
		c.frames = append(c.frames, data)
	}
	dec := json.NewDecoder(&labels)
	for {
		var l espsynth.Label
		if err := dec.Decode(&l); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		c.labels = append(c.labels, l)
	}
	for _, sa := range g.SAs() {
		c.sas[flowKey{sa.Src, sa.Dst, sa.SPI}] = sa
	}
	return c
}

// espPacket is an ESP packet found in a frame.
type espPacket struct {
	src, dst netip.Addr
	esp      []byte // SPI to the end of the ICV
	udp      *layers.UDP
}

// findESP decodes a frame with gopacket and returns its ESP packet, or nil
// for a frame that is not ESP.
func findESP(t *testing.T, frame []byte) *espPacket {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	var e espPacket
	l2 := 14
	if p.Layer(layers.LayerTypeDot1Q) != nil {
		l2 += 4
	}
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		e.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		e.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		if err, res := ip.VerifyChecksum(); err != nil || !res.Valid {
			t.Fatalf("outer IPv4 checksum: %v %+v", err, res)
		}
		if ip.Length > 1500 {
			t.Fatalf("IPv4 packet of %d bytes exceeds a 1500-byte MTU", ip.Length)
		}
		if int(ip.Length) != len(frame)-l2 {
			t.Fatalf("outer IPv4 length %d, frame %d", ip.Length, len(frame))
		}
	case *layers.IPv6:
		e.src, _ = netip.AddrFromSlice(ip.SrcIP)
		e.dst, _ = netip.AddrFromSlice(ip.DstIP)
		if ip.Length+40 > 1500 {
			t.Fatalf("IPv6 packet of %d bytes exceeds a 1500-byte MTU", ip.Length+40)
		}
		if int(ip.Length) != len(frame)-l2-40 {
			t.Fatalf("outer IPv6 length %d, frame %d", ip.Length, len(frame))
		}
	default:
		t.Fatalf("no IP layer in %x", frame)
	}
	if l := p.Layer(layers.LayerTypeIPSecESP); l != nil {
		e.esp = l.LayerContents()
		e.esp = append(e.esp, l.LayerPayload()...)
		return &e
	}
	u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok || (u.SrcPort != 4500 && u.DstPort != 4500) {
		return nil
	}
	pl := u.LayerPayload()
	if len(pl) == 1 && pl[0] == 0xff || len(pl) >= 4 && binary.BigEndian.Uint32(pl) == 0 {
		return nil // NAT-T keepalive, or IKE behind the non-ESP marker
	}
	e.esp, e.udp = pl, u
	return &e
}

// authHash is the test's own mapping of integrity algorithms to hashes.
func authHash(a espsynth.Auth) func() hash.Hash {
	return map[espsynth.Auth]func() hash.Hash{
		espsynth.AuthHMACSHA1:   sha1.New,
		espsynth.AuthHMACSHA256: sha256.New,
		espsynth.AuthHMACSHA384: sha512.New384,
		espsynth.AuthHMACSHA512: sha512.New,
	}[a]
}

// openESP verifies the ICV of an ESP packet with the SA's keys, decrypts
// it, and returns the plaintext from the payload through the next header.
// It uses crypto/cipher's own modes, independent of the generator's.
func openESP(sa espsynth.SA, esp []byte) ([]byte, error) {
	ivLen := sa.Cipher.IVLen()
	if len(esp) < 8+ivLen+sa.ICVLen+2 {
		return nil, fmt.Errorf("ESP packet of %d bytes is too short", len(esp))
	}
	iv := esp[8 : 8+ivLen]
	body := esp[8+ivLen : len(esp)-sa.ICVLen]
	icv := esp[len(esp)-sa.ICVLen:]
	nonce := append(append([]byte{}, sa.Salt...), iv...)
	if sa.Auth != espsynth.AuthNone {
		m := hmac.New(authHash(sa.Auth), sa.AuthKey)
		m.Write(esp[:len(esp)-sa.ICVLen])
		if !hmac.Equal(m.Sum(nil)[:sa.ICVLen], icv) {
			return nil, errors.New("HMAC ICV mismatch")
		}
	}
	pt := append([]byte{}, body...)
	switch sa.Cipher {
	case espsynth.CipherNULL:
	case espsynth.CipherNullAuthAESGMAC:
		blk, _ := aes.NewCipher(sa.EncKey)
		gcm, _ := cipher.NewGCM(blk)
		if _, err := gcm.Open(nil, nonce, icv, esp[:len(esp)-16]); err != nil {
			return nil, fmt.Errorf("GMAC: %w", err)
		}
	case espsynth.CipherAESCBC, espsynth.Cipher3DES:
		var blk cipher.Block
		if sa.Cipher == espsynth.Cipher3DES {
			blk, _ = des.NewTripleDESCipher(sa.EncKey)
		} else {
			blk, _ = aes.NewCipher(sa.EncKey)
		}
		if len(pt)%blk.BlockSize() != 0 {
			return nil, fmt.Errorf("CBC ciphertext of %d bytes", len(pt))
		}
		cipher.NewCBCDecrypter(blk, iv).CryptBlocks(pt, pt)
	case espsynth.CipherAESCTR:
		blk, _ := aes.NewCipher(sa.EncKey)
		ctr := append(nonce, 0, 0, 0, 1)
		cipher.NewCTR(blk, ctr).XORKeyStream(pt, pt)
	case espsynth.CipherAESGCM:
		blk, _ := aes.NewCipher(sa.EncKey)
		if sa.ICVLen >= 12 {
			gcm, _ := cipher.NewGCMWithTagSize(blk, sa.ICVLen)
			out, err := gcm.Open(nil, nonce, esp[8+ivLen:], esp[:8])
			if err != nil {
				return nil, fmt.Errorf("AES-GCM: %w", err)
			}
			pt = out
			break
		}
		// Go will not check an 8-byte tag: decrypt with the counter GCM
		// uses for data (J0+1), reseal, and compare the tag's prefix.
		cipher.NewCTR(blk, append(nonce, 0, 0, 0, 2)).XORKeyStream(pt, pt)
		gcm, _ := cipher.NewGCM(blk)
		full := gcm.Seal(nil, nonce, pt, esp[:8])
		if !bytes.Equal(full[:len(body)], body) || !bytes.Equal(full[len(body):len(body)+sa.ICVLen], icv) {
			return nil, errors.New("AES-GCM-8: tag mismatch")
		}
	case espsynth.CipherChaCha20Poly1305:
		aead, _ := chacha20poly1305.New(sa.EncKey)
		out, err := aead.Open(nil, nonce, esp[8+ivLen:], esp[:8])
		if err != nil {
			return nil, fmt.Errorf("ChaCha20-Poly1305: %w", err)
		}
		pt = out
	default:
		return nil, fmt.Errorf("unknown cipher %v", sa.Cipher)
	}
	return pt, nil
}

// checkTrailer checks RFC 4303 padding (1, 2, 3, …) and alignment and
// returns the payload and next header.
func checkTrailer(sa espsynth.SA, pt []byte, padding string) ([]byte, uint8, error) {
	nh, padLen := pt[len(pt)-1], int(pt[len(pt)-2])
	if padLen+2 > len(pt) {
		return nil, 0, fmt.Errorf("pad length %d exceeds the payload", padLen)
	}
	for i, b := range pt[len(pt)-2-padLen : len(pt)-2] {
		if int(b) != i+1 {
			return nil, 0, fmt.Errorf("padding byte %d is %d", i, b)
		}
	}
	align := map[espsynth.Cipher]int{espsynth.CipherAESCBC: 16, espsynth.Cipher3DES: 8}[sa.Cipher]
	if align == 0 {
		align = 4
	}
	if len(pt)%align != 0 {
		return nil, 0, fmt.Errorf("%d bytes of plaintext are not %d-aligned", len(pt), align)
	}
	if (padding == "minimal" || padding == "tfc") && padLen >= align {
		return nil, 0, fmt.Errorf("minimal padding of %d bytes", padLen)
	}
	return pt[:len(pt)-2-padLen], nh, nil
}

// checkSegment decodes a transport segment carried with protocol proto
// between src and dst, checks its checksum, and returns the protocol's tag.
func checkSegment(seg []byte, proto uint8, src, dst netip.Addr) (string, error) {
	var nl gopacket.NetworkLayer
	if src.Is4() {
		nl = &layers.IPv4{Version: 4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: layers.IPProtocol(proto)}
	} else {
		nl = &layers.IPv6{Version: 6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: layers.IPProtocol(proto)}
	}
	type verifier interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	type pseudo interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	var lt gopacket.LayerType
	switch proto {
	case 6:
		lt = layers.LayerTypeTCP
	case 17:
		lt = layers.LayerTypeUDP
	case 1:
		lt = layers.LayerTypeICMPv4
	case 58:
		lt = layers.LayerTypeICMPv6
	case 47:
		gre := &layers.GRE{}
		if err := gre.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil {
			return "", fmt.Errorf("GRE: %v", err)
		}
		if gre.Protocol != layers.EthernetTypeIPv4 || len(gre.Contents) != 4 {
			return "", fmt.Errorf("GRE header %x", gre.Contents)
		}
		if _, err := checkInner(gre.Payload, 4, false); err != nil {
			return "", fmt.Errorf("inside GRE: %v", err)
		}
		return "gre", nil
	case 132:
		crc := crc32.Checksum(append(append(append([]byte{}, seg[:8]...), 0, 0, 0, 0), seg[12:]...), crc32.MakeTable(crc32.Castagnoli))
		if got := binary.LittleEndian.Uint32(seg[8:]); got != crc {
			return "", fmt.Errorf("SCTP CRC32c %#x, want %#x", got, crc)
		}
		return "sctp", nil
	default:
		return "", fmt.Errorf("unexpected protocol %d", proto)
	}
	p := gopacket.NewPacket(seg, lt, gopacket.Lazy)
	l := p.Layer(lt)
	if l == nil {
		return "", fmt.Errorf("gopacket cannot decode protocol %d: %v", proto, p.ErrorLayer())
	}
	if ps, ok := l.(pseudo); ok {
		if err := ps.SetNetworkLayerForChecksum(nl); err != nil {
			return "", err
		}
	}
	err, res := l.(verifier).VerifyChecksum()
	if err != nil || !res.Valid {
		return "", fmt.Errorf("protocol %d checksum: %v %+v", proto, err, res)
	}
	if u, ok := l.(*layers.UDP); ok && int(u.Length) != len(seg) {
		return "", fmt.Errorf("UDP length %d, segment %d", u.Length, len(seg))
	}
	return map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}[proto], nil
}

// checkInner checks a tunnel-mode payload: an inner datagram, maybe
// followed by TFC padding. It returns the inner protocol name.
func checkInner(payload []byte, nh uint8, tfc bool) (string, error) {
	var src, dst netip.Addr
	var proto uint8
	var total, hl int
	switch nh {
	case 4:
		ip := &layers.IPv4{}
		if err := ip.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			return "", err
		}
		if err, res := ip.VerifyChecksum(); err != nil || !res.Valid {
			return "", fmt.Errorf("inner IPv4 checksum %+v", res)
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		proto, total, hl = uint8(ip.Protocol), int(ip.Length), 20
	case 41:
		ip := &layers.IPv6{}
		if err := ip.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			return "", err
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		proto, total, hl = uint8(ip.NextHeader), 40+int(ip.Length), 40
	default:
		return "", fmt.Errorf("tunnel-mode next header %d", nh)
	}
	switch {
	case total > len(payload):
		return "", fmt.Errorf("inner datagram of %d bytes in %d", total, len(payload))
	case total < len(payload) && !tfc:
		return "", fmt.Errorf("%d bytes after the inner datagram without TFC padding", len(payload)-total)
	case total == len(payload) && tfc:
		return "", errors.New("TFC flow without TFC padding")
	}
	return checkSegment(payload[hl:total], proto, src, dst)
}

func TestPacketsVerify(t *testing.T) {
	flows := matrixFlows()
	c := generate(t, 7, espsynth.Config{Flows: flows, Background: 0.1})
	labels := map[flowKey]espsynth.Label{}
	for _, l := range c.labels {
		k := flowKey{netip.MustParseAddr(l.Src), netip.MustParseAddr(l.Dst), l.SPI}
		if _, dup := labels[k]; dup {
			t.Fatalf("flow %v labelled twice", k)
		}
		labels[k] = l
	}
	wantFlows := 0
	for _, f := range flows {
		wantFlows += f.Flows()
	}
	if len(labels) != wantFlows {
		t.Fatalf("%d labels, want %d", len(labels), wantFlows)
	}
	seq := map[flowKey]uint32{}
	seen := map[string]int{}
	background := 0
	for i, frame := range c.frames {
		e := findESP(t, frame)
		if e == nil {
			background++
			continue
		}
		spi := binary.BigEndian.Uint32(e.esp)
		k := flowKey{e.src, e.dst, spi}
		sa, ok := c.sas[k]
		l, lok := labels[k]
		if !ok || !lok {
			t.Fatalf("frame %d: ESP flow %v has no SA or no label", i, k)
		}
		seq[k]++
		if got := binary.BigEndian.Uint32(e.esp[4:]); got != seq[k] {
			t.Fatalf("frame %d: flow %v sequence number %d, want %d", i, k, got, seq[k])
		}
		if (e.udp != nil) != (l.Encap == "udp") {
			t.Fatalf("frame %d: encapsulation does not match label %q", i, l.Encap)
		}
		if e.udp != nil {
			if int(e.udp.SrcPort) != *l.Sport || int(e.udp.DstPort) != *l.Dport {
				t.Fatalf("frame %d: ports %d>%d, label %d>%d", i, e.udp.SrcPort, e.udp.DstPort, *l.Sport, *l.Dport)
			}
			if e.src.Is4() && e.udp.Checksum != 0 {
				t.Fatalf("frame %d: ESP-in-UDP over IPv4 with checksum %#x, want 0", i, e.udp.Checksum)
			}
			if e.src.Is6() {
				if _, err := checkSegment(append(e.udp.LayerContents(), e.udp.LayerPayload()...), 17, e.src, e.dst); err != nil {
					t.Fatalf("frame %d: outer UDP over IPv6: %v", i, err)
				}
			}
		}
		pt, err := openESP(sa, e.esp)
		if err != nil {
			t.Fatalf("frame %d, flow %v (%s/%s): %v", i, k, sa.Cipher, sa.Auth, err)
		}
		payload, nh, err := checkTrailer(sa, pt, l.Padding)
		if err != nil {
			t.Fatalf("frame %d, flow %v (%s): %v", i, k, sa.Cipher, err)
		}
		seen["cipher "+l.Cipher]++
		seen["padding "+l.Padding]++
		if len(pt)-len(payload)-2 > 16 {
			seen["long padding"]++
		}
		var proto string
		switch {
		case nh == 59:
			if !contains(l.Tags, "dummy-nh59") {
				t.Fatalf("frame %d: dummy packet in a flow without the dummy-nh59 tag", i)
			}
			seen["dummy"]++
			continue
		case l.Mode == "tunnel":
			proto, err = checkInner(payload, nh, l.Padding == "tfc")
		default:
			proto, err = checkSegment(payload, nh, e.src, e.dst)
		}
		if err != nil {
			t.Fatalf("frame %d, flow %v (%s, %s): %v", i, k, l.Mode, l.Inner, err)
		}
		seen["inner "+proto]++
		if v := l.Inner[:min(5, len(l.Inner))]; v == "dual/" {
			seen["dual "+map[uint8]string{4: "ipv4", 41: "ipv6"}[nh]]++
		}
		for _, tag := range l.Tags {
			seen["tag "+tag]++
		}
		if l.Inner != "mixed" && !bytes.HasSuffix([]byte(l.Inner), []byte("/mixed")) && !bytes.HasSuffix([]byte(l.Inner), []byte(proto)) {
			t.Fatalf("frame %d: inner %s, label says %s", i, proto, l.Inner)
		}
	}
	for k, l := range labels {
		if int(seq[k]) != l.Packets {
			t.Errorf("flow %v: %d packets, label says %d", k, seq[k], l.Packets)
		}
		sa := c.sas[k]
		if l.ICVLen != sa.ICVLen || l.IVLen != sa.Cipher.IVLen() || l.Cipher != sa.Cipher.String() {
			t.Errorf("flow %v: label %+v does not match SA %v/%v", k, l, sa.Cipher, sa.Auth)
		}
		if (l.Verdict == "null") != sa.Cipher.Cleartext() {
			t.Errorf("flow %v: verdict %q for %v", k, l.Verdict, sa.Cipher)
		}
	}
	if background == 0 {
		t.Error("no background frames")
	}
	for _, want := range []string{
		"cipher NULL", "cipher ENCR_NULL_AUTH_AES_GMAC", "cipher AES-CBC", "cipher AES-CTR", "cipher AES-GCM",
		"cipher CHACHA20-POLY1305", "cipher 3DES", "padding minimal", "padding extra", "padding tfc",
		"long padding", "dummy", "inner tcp", "inner udp", "inner icmp", "inner icmpv6", "inner sctp", "inner gre",
		"dual ipv4", "dual ipv6", "tag rekey", "tag before-rekey", "tag rekeyed", "tag custom", "tag nat", "tag short",
	} {
		if seen[want] == 0 {
			t.Errorf("no packet with %s", want)
		}
	}
	t.Logf("%d frames, %d background, %d flows: %v", len(c.frames), background, len(labels), seen)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (k flowKey) String() string { return fmt.Sprintf("%v>%v/%#x", k.src, k.dst, k.spi) }

func TestVLANTags(t *testing.T) {
	c := generate(t, 4, espsynth.Config{NumFlows: 20, Packets: 400, Background: 0.2, VLAN: 42})
	esp := 0
	for i, frame := range c.frames {
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		q, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		if !ok || q.VLANIdentifier != 42 {
			t.Fatalf("frame %d: no 802.1Q tag for VLAN 42: %v", i, p)
		}
		e := findESP(t, frame)
		if e == nil {
			continue
		}
		esp++
		sa := c.sas[flowKey{e.src, e.dst, binary.BigEndian.Uint32(e.esp)}]
		if _, err := openESP(sa, e.esp); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if esp != 400 {
		t.Errorf("%d ESP packets, want 400", esp)
	}
	if _, err := espsynth.NewGenerator(1, espsynth.Config{NumFlows: 1, Packets: 1, VLAN: 4095}); err == nil {
		t.Error("VLAN 4095 accepted")
	}
}

// TestLastInfo checks the per-frame ground truth against the frame.
func TestLastInfo(t *testing.T) {
	g, err := espsynth.NewGenerator(8, espsynth.Config{Flows: matrixFlows(), Background: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	sas := map[flowKey]espsynth.SA{}
	for _, sa := range g.SAs() {
		sas[flowKey{sa.Src, sa.Dst, sa.SPI}] = sa
	}
	var buf []byte
	esp, bg := 0, 0
	for i := 0; ; i++ {
		frame, _, err := g.AppendPacket(buf[:0])
		if errors.Is(err, io.EOF) {
			break
		}
		buf = frame
		info := g.LastInfo()
		e := findESP(t, frame)
		if e == nil {
			if info.ESP {
				t.Fatalf("frame %d: background frame described as ESP: %+v", i, info)
			}
			bg++
			continue
		}
		esp++
		if !info.ESP || info.Src != e.src || info.Dst != e.dst || info.SPI != binary.BigEndian.Uint32(e.esp) ||
			info.Seq != binary.BigEndian.Uint32(e.esp[4:]) || !bytes.Equal(frame[info.ESPOffset:], e.esp) {
			t.Fatalf("frame %d: info %+v does not match the frame", i, info)
		}
		sa, ok := sas[flowKey{e.src, e.dst, info.SPI}]
		if !ok { // rekeyed since the map was made
			for _, sa := range g.SAs() {
				sas[flowKey{sa.Src, sa.Dst, sa.SPI}] = sa
			}
			sa = sas[flowKey{e.src, e.dst, info.SPI}]
		}
		pt, err := openESP(sa, e.esp)
		if err != nil {
			t.Fatal(err)
		}
		if info.IVLen != sa.Cipher.IVLen() || info.ICVLen != sa.ICVLen || info.Cleartext != sa.Cipher.Cleartext() ||
			int(pt[len(pt)-2]) != info.PadLen || pt[len(pt)-1] != info.NextHeader {
			t.Fatalf("frame %d: info %+v, trailer %d %d", i, info, pt[len(pt)-2], pt[len(pt)-1])
		}
	}
	if esp == 0 || bg == 0 {
		t.Fatalf("%d ESP, %d background frames", esp, bg)
	}
}
