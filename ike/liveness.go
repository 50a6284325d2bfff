package ike

import (
	"context"
	"errors"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// Ping runs an empty INFORMATIONAL exchange, the liveness check of RFC 7296
// 2.4. It fails with ErrTimeout when the peer is gone.
func (sa *IKESA) Ping(ctx context.Context) error {
	_, err := sa.request(ctx, message.INFORMATIONAL, nil)
	return err
}

// startKeepalive sends NAT-T keepalives while the SA lives if a NAT is in
// front of us, so the NAT keeps the mapping of the NAT-T port (which also
// carries the ESP-in-UDP) even when no traffic flows.
func (sa *IKESA) startKeepalive() {
	d := sa.cfg.NATKeepalive
	if d <= 0 || !sa.natLocal || !sa.natt {
		return
	}
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-sa.dead:
				return
			case <-sa.ep.closed:
				return
			case <-t.C:
			}
			sa.mu.Lock()
			remote := sa.remote
			sa.mu.Unlock()
			if _, err := sa.ep.natt.WriteToUDPAddrPort([]byte{0xff}, remote); err != nil {
				sa.log.Debug("ike: NAT-T keepalive", "err", err)
			}
		}
	}()
}

// startDPD starts the periodic liveness check if configured; the IKE SA is
// torn down when the peer stops answering.
func (sa *IKESA) startDPD() {
	d := sa.cfg.DPDInterval
	if d <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-sa.dead:
				return
			case <-sa.ep.closed:
				return
			case <-t.C:
			}
			err := sa.Ping(context.Background())
			if errors.Is(err, ErrTimeout) {
				sa.log.Info("ike: peer is gone, deleting IKE SA", "err", err)
				sa.teardown()
				return
			}
		}
	}()
}
