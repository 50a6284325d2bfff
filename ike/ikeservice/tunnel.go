package ikeservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// tunnel is one configured connection: its ike.Config, the IKE SAs
// established under it, and whether it is to be kept up.
type tunnel struct {
	s    *Service
	spec config.TunnelSpec
	cfg  *ike.Config
	ep   *ike.Endpoint

	// initMu serialises initiations, so the keeper and a control request
	// never bring up two IKE SAs at once.
	initMu sync.Mutex

	mu         sync.Mutex
	sas        map[*ike.IKESA]time.Time // established IKE SAs and when
	children   map[childKey]time.Time   // registered Child SA directions and when
	keep       bool                     // re-initiate when down (start tunnels)
	wake       chan struct{}            // closed and replaced when keep or sas change
	connecting bool
	cancelInit context.CancelFunc // of the running initiation
	lastErr    string
}

type childKey struct {
	spi     uint32
	inbound bool
}

func newTunnel(s *Service, ts config.TunnelSpec, cred config.Credentials, rt ike.Retransmit, ikeLog *slog.Logger) *tunnel {
	t := &tunnel{s: s, spec: ts, sas: map[*ike.IKESA]time.Time{}, children: map[childKey]time.Time{},
		keep: ts.Start == config.StartStart, wake: make(chan struct{})}
	t.cfg = &ike.Config{
		LocalID: ts.LocalID, RemoteID: ts.RemoteID,
		PSK: cred.PSK, Certificates: cred.Certificates, PrivateKey: cred.PrivateKey, RootCAs: cred.RootCAs,
		Chains: cred.Chains, SignatureAuth: cred.SignatureAuth, AllowSHA1Auth: cred.AllowSHA1Auth,
		IKE: ts.IKE, ESP: ts.ESP,
		LocalTS: selectors(ts.LocalTS), RemoteTS: selectors(ts.RemoteTS),
		Mode: ts.Mode, ForceEncap: ts.Encap, AllowWeak: ts.AllowWeak,
		RemoteNATPort: ts.RemoteNATPort, Retransmit: rt,
		DPDInterval: ts.DPD,
		Registrar:   t, Established: t.established,
		Logger: ikeLog.With("tunnel", ts.Name),
	}
	ts.Lifetimes.Apply(t.cfg)
	return t
}

func selectors(ps []netip.Prefix) []message.Selector {
	var out []message.Selector
	for _, p := range ps {
		out = append(out, ike.PrefixSelector(p))
	}
	return out
}

// signalLocked wakes the keeper; call with t.mu held.
func (t *tunnel) signalLocked() {
	close(t.wake)
	t.wake = make(chan struct{})
}

func (t *tunnel) setKeep(keep bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keep = keep
	if !keep && t.cancelInit != nil {
		t.cancelInit()
	}
	t.signalLocked()
}

// established is the ike.Config callback for IKE SAs of either role.
func (t *tunnel) established(sa *ike.IKESA) { t.track(sa) }

// track records an established IKE SA and forgets it when it goes.
func (t *tunnel) track(sa *ike.IKESA) {
	t.mu.Lock()
	if _, ok := t.sas[sa]; ok {
		t.mu.Unlock()
		return
	}
	select {
	case <-sa.Done():
		t.mu.Unlock()
		return
	default:
	}
	t.sas[sa] = time.Now()
	t.lastErr = ""
	t.mu.Unlock()
	local, remote, natt := sa.Addrs()
	spiI, spiR := sa.SPIs()
	t.s.log.Info().Str("tunnel", t.spec.Name).Stringer("local", local).Stringer("remote", remote).
		Stringer("peer_id", sa.PeerID()).Bool("initiator", sa.Initiator()).Bool("natt", natt).
		Str("spi_i", fmt.Sprintf("%016x", spiI)).Str("spi_r", fmt.Sprintf("%016x", spiR)).Msg("IKE SA established")
	go func() {
		<-sa.Done()
		t.mu.Lock()
		delete(t.sas, sa)
		t.signalLocked()
		t.mu.Unlock()
		t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_i", fmt.Sprintf("%016x", spiI)).
			Str("spi_r", fmt.Sprintf("%016x", spiR)).Msg("IKE SA deleted")
	}()
}

// RegisterSA records one Child SA direction and passes it on to the
// service's registrar.
func (t *tunnel) RegisterSA(i ike.SAInfo) error {
	if t.s.reg != nil {
		if err := t.s.reg.RegisterSA(i); err != nil {
			t.s.log.Error().Err(err).Str("tunnel", t.spec.Name).Str("spi", fmt.Sprintf("%08x", i.SPI)).Msg("Child SA refused by the registrar")
			return err
		}
	}
	t.mu.Lock()
	t.children[childKey{i.SPI, i.Inbound}] = time.Now()
	t.mu.Unlock()
	t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi", fmt.Sprintf("%08x", i.SPI)).Bool("inbound", i.Inbound).
		Stringer("src", i.Src).Stringer("dst", i.Dst).Stringer("encap", i.Encap).Bool("null", i.Null).
		Int("iv_len", i.IVLen).Int("icv_len", i.ICVLen).Stringer("mode", i.Mode).Msg("Child SA registered")
	return nil
}

// UnregisterSA forgets one Child SA direction.
func (t *tunnel) UnregisterSA(i ike.SAInfo) {
	if t.s.reg != nil {
		t.s.reg.UnregisterSA(i)
	}
	t.mu.Lock()
	delete(t.children, childKey{i.SPI, i.Inbound})
	t.mu.Unlock()
	t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi", fmt.Sprintf("%08x", i.SPI)).Bool("inbound", i.Inbound).Msg("Child SA unregistered")
}

// current returns one established IKE SA, or nil.
func (t *tunnel) current() *ike.IKESA {
	t.mu.Lock()
	defer t.mu.Unlock()
	for sa := range t.sas {
		return sa
	}
	return nil
}

// initiate brings up an IKE SA unless one exists.
func (t *tunnel) initiate(ctx context.Context) (*ike.IKESA, error) {
	t.initMu.Lock()
	defer t.initMu.Unlock()
	if sa := t.current(); sa != nil {
		return sa, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.mu.Lock()
	t.connecting, t.cancelInit = true, cancel
	t.mu.Unlock()
	remote := netip.AddrPortFrom(t.spec.Remote, t.spec.RemotePort)
	// A copy per initiation: the SPD may have changed since the last, and
	// the responders share t.cfg.
	cfg := *t.cfg
	local, remoteTS, fromSPD, err := t.proposal()
	var sa *ike.IKESA
	if err == nil {
		cfg.LocalTS, cfg.RemoteTS = local, remoteTS
		t.s.log.Info().Str("tunnel", t.spec.Name).Stringer("remote", remote).Bool("ts_from_spd", fromSPD).
			Strs("local_ts", selectorStrings(local)).Strs("remote_ts", selectorStrings(remoteTS)).Msg("initiating")
		sa, err = t.ep.Initiate(ctx, &cfg, remote)
	}
	if sa != nil {
		t.track(sa)
	}
	t.mu.Lock()
	t.connecting, t.cancelInit = false, nil
	if err != nil {
		t.lastErr = err.Error()
	}
	t.mu.Unlock()
	if err != nil {
		t.s.log.Warn().Err(err).Str("tunnel", t.spec.Name).Stringer("remote", remote).Msg("initiation failed")
		return sa, fmt.Errorf("ikeservice: initiate %s: %w", t.spec.Name, err)
	}
	return sa, nil
}

// terminate deletes every IKE SA of the tunnel and returns how many there
// were.
func (t *tunnel) terminate(ctx context.Context) (int, error) {
	t.mu.Lock()
	sas := make([]*ike.IKESA, 0, len(t.sas))
	for sa := range t.sas {
		sas = append(sas, sa)
	}
	t.mu.Unlock()
	var errs []error
	for _, sa := range sas {
		if err := sa.Delete(ctx); err != nil && !errors.Is(err, ike.ErrDeleted) {
			errs = append(errs, err)
		}
		t.mu.Lock()
		delete(t.sas, sa)
		t.mu.Unlock()
	}
	if len(sas) > 0 {
		t.s.log.Info().Str("tunnel", t.spec.Name).Int("ike_sas", len(sas)).Msg("terminated")
	}
	return len(sas), errors.Join(errs...)
}

// keeper initiates a start tunnel whenever it should be up and is not,
// backing off after failures, until ctx ends.
func (t *tunnel) keeper(ctx context.Context) {
	failures := 0
	for {
		t.mu.Lock()
		want := t.keep && len(t.sas) == 0
		wake := t.wake
		t.mu.Unlock()
		if !want {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		sa, err := t.initiate(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			up := time.Now()
			select {
			case <-sa.Done():
			case <-ctx.Done():
				return
			}
			// An SA that lived a while resets the back-off; one the peer
			// deletes at once does not, so espy does not spin against it.
			if time.Since(up) > time.Minute {
				failures = 0
			}
		}
		d := retryDelay(failures)
		failures++
		if err != nil {
			t.s.log.Info().Str("tunnel", t.spec.Name).Dur("retry_in", d).Msg("will initiate again")
		}
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}

// status describes the tunnel and its SAs; dp holds the data plane's SAs
// (Service.dataPlaneSAs).
func (t *tunnel) status(dp map[childKey]dpSA) TunnelStatus {
	st := TunnelStatus{Name: t.spec.Name, StartAction: t.spec.Start.String(), State: "down", IKESAs: []IKESAStatus{}}
	if t.spec.Remote.IsValid() {
		st.Remote = netip.AddrPortFrom(t.spec.Remote, t.spec.RemotePort).String()
	}
	t.mu.Lock()
	type est struct {
		sa *ike.IKESA
		at time.Time
	}
	var sas []est
	for sa, at := range t.sas {
		sas = append(sas, est{sa, at})
	}
	if t.connecting {
		st.State = "connecting"
	}
	st.LastError = t.lastErr
	children := make(map[childKey]time.Time, len(t.children))
	for k, v := range t.children {
		children[k] = v
	}
	t.mu.Unlock()
	for _, e := range sas {
		st.IKESAs = append(st.IKESAs, t.s.saStatus(e.sa, e.at, children, dp))
	}
	if len(st.IKESAs) > 0 {
		st.State = "established"
	}
	sortIKESAs(st.IKESAs)
	return st
}
