package esptun

import (
	"errors"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
)

// bufSize holds any IP packet.
const bufSize = 65536

// tunLoop seals what the host routes into the device; it is the only
// sender of every outbound SA.
func (d *DataPlane) tunLoop() {
	defer d.wg.Done()
	in := make([]byte, bufSize)
	out := make([]byte, 0, bufSize+256)
	for {
		n, err := d.dev.Read(in)
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			d.log.Warn("esptun: read TUN", "err", err)
			continue
		}
		d.output(in[:n], out)
	}
}

// output sends IP packet p through the newest active outbound SA whose
// selectors cover it.
func (d *DataPlane) output(p, buf []byte) {
	f, ok := parseFlow(p)
	if !ok {
		d.noSA.Add(1)
		return
	}
	var sa *outSA
	expired := false
	for _, o := range d.sas.Load().out {
		if o.active.Load() && matches(o.info.LocalTS, o.info.RemoteTS, f.src, f.dst, &f, true) {
			if o.lim.expired() {
				// Past its hard limit: an SA replacing it may
				// follow in the list, or none does.
				expired = true
				continue
			}
			sa = o
			break
		}
	}
	if sa == nil {
		if expired {
			d.limitDrops.Add(1)
		} else {
			d.noSA.Add(1)
		}
		return
	}
	payload, nh, err := esp.Payload(sa.mode, p)
	if err != nil {
		d.noSA.Add(1)
		return
	}
	pkt, err := d.seal(sa, buf[:0], payload, nh)
	if err != nil {
		if errors.Is(err, errExpired) {
			d.limitDrops.Add(1)
		} else {
			d.sendErrors.Add(1)
		}
		return
	}
	if sa.raw != nil {
		fd := d.raw4
		if !sa.info.Dst.Is4() {
			fd = d.raw6
		}
		err = unix.Sendto(fd, pkt, 0, sa.raw)
	} else {
		err = d.cfg.Endpoint.WriteESP(pkt, sa.to)
	}
	if err != nil {
		d.sendErrors.Add(1)
	}
}

// udpInput returns the handler for ESP-in-UDP on the NAT-T socket; it
// runs on the endpoint's NAT-T read goroutine.
func (d *DataPlane) udpInput() ike.ESPHandler {
	scratch := make([]byte, bufSize)
	return func(pkt []byte, _ netip.AddrPort) { d.input(pkt, ike.EncapUDP, scratch) }
}

// rawLoop reads plain ESP; IPv4 raw sockets deliver the IP header too.
func (d *DataPlane) rawLoop(f *os.File, v4 bool) {
	defer d.wg.Done()
	buf := make([]byte, bufSize)
	scratch := make([]byte, bufSize)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		if v4 {
			if n < 20 {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if ihl < 20 || ihl > n {
				continue
			}
			p = p[ihl:]
		}
		d.input(p, ike.EncapNone, scratch)
	}
}

// input opens one ESP packet and writes the inner packet to the device.
// scratch belongs to the calling goroutine.
func (d *DataPlane) input(pkt []byte, encap ike.Encapsulation, scratch []byte) {
	if len(pkt) < esp.HeaderLen {
		d.noSPI.Add(1)
		return
	}
	spi := uint32(pkt[0])<<24 | uint32(pkt[1])<<16 | uint32(pkt[2])<<8 | uint32(pkt[3])
	sa := d.sas.Load().lookupIn(spi)
	// Each SA is opened only by the goroutine of its own encapsulation,
	// which keeps esp.Inbound single-threaded.
	if sa == nil || sa.info.Encap != encap {
		d.noSPI.Add(1)
		return
	}
	payload, nh, err := d.open(sa, pkt)
	if err != nil {
		if errors.Is(err, errExpired) {
			d.limitDrops.Add(1)
		}
		return // otherwise counted by the SA
	}
	if o := sa.pair.Load(); o != nil && !o.active.Load() {
		// The peer sends on the new SA: it has installed the pair,
		// so ours may replace the old outbound SA now.
		o.active.Store(true)
	}
	ip, err := esp.Inner(sa.mode, scratch[:0], payload, nh, sa.info.Src, sa.info.Dst)
	if err != nil {
		d.selectorDrops.Add(1)
		return
	}
	f, ok := parseFlow(ip)
	if !ok || !matches(sa.info.LocalTS, sa.info.RemoteTS, f.dst, f.src, &f, false) {
		d.selectorDrops.Add(1)
		return
	}
	if _, err := d.dev.Write(ip); err != nil {
		d.tunWriteErrors.Add(1)
	}
}
