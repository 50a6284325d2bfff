// Package ikeservice is the IKE daemon inside "espy run": it builds IKEv2
// connections from the tunnels of espy's YAML configuration, listens on the
// IKE and NAT-T ports, answers and initiates IKE SAs, registers their Child
// SAs with the inline registrar, carries their traffic through espy's
// userspace ESP data plane when ike.dataplane asks for it, and serves a
// control socket for "espy ike status | initiate NAME | terminate NAME".
package ikeservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/policy"
	"github.com/rs/zerolog"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownTunnel: no tunnel of that name is configured.
	ErrUnknownTunnel = errors.New("ikeservice: unknown tunnel")
	// ErrNotEstablished: the tunnel has no IKE SA to terminate.
	ErrNotEstablished = errors.New("ikeservice: tunnel has no IKE SA")
	// ErrNoRemote: the tunnel has no remote_addr to initiate to.
	ErrNoRemote = errors.New("ikeservice: tunnel has no remote address")
	// ErrClosed: the service is shutting down.
	ErrClosed = errors.New("ikeservice: closed")
)

// Options configure a Service.
type Options struct {
	// Config holds the ike: and tunnels: sections (already validated by
	// config.Parse).
	Config *config.Config
	// Registrar receives every Child SA (espy run's inline registrar); nil:
	// Child SAs are only logged.
	Registrar ike.SARegistrar
	// Counters, if set, returns the packet and byte counters of one
	// direction of a Child SA, for status.
	Counters func(ike.SAInfo) (packets, bytes uint64, ok bool)
	// Log receives service events (SAs up and down, failures).
	Log zerolog.Logger
	// IKELog receives the protocol's own log; nil: discarded.
	IKELog *slog.Logger
	// Socket overrides the control socket path of the configuration;
	// "-" serves none.
	Socket string
	// Policy is the configuration's SPD, if any: a tunnel named by a
	// PROTECT rule proposes and narrows its traffic selectors through it.
	// ReloadPolicy replaces it.
	Policy *policy.Policy
	// PublishPolicy, if set, installs a reloaded SPD elsewhere (espy run:
	// the inspection policy of the fast path) before the service uses it;
	// an error rejects the reload.
	PublishPolicy func(*policy.Policy) error
}

// Service is the running IKE daemon.
type Service struct {
	log       zerolog.Logger
	reg       ike.SARegistrar
	counters  func(ike.SAInfo) (uint64, uint64, bool)
	dp        dataPlane       // nil: ike.dataplane none
	dpStatus  DataPlaneStatus // what was opened and why
	endpoints []*ike.Endpoint
	tunnels   []*tunnel
	byName    map[string]*tunnel
	control   *controlServer

	spd      atomic.Pointer[policy.Policy] // nil: no policy section
	file     string                        // the configuration file, which ReloadPolicy reads
	publish  func(*policy.Policy) error
	reloadMu sync.Mutex // one reload at a time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start loads the tunnels' credentials, listens, starts answering for the
// respond and start tunnels, starts initiating the start tunnels, and
// serves the control socket.
func Start(o Options) (_ *Service, err error) {
	c := o.Config
	spec, err := c.IKESpec()
	if err != nil {
		return nil, err
	}
	ikeLog := o.IKELog
	if ikeLog == nil {
		ikeLog = slog.New(slog.DiscardHandler)
	}
	s := &Service{log: o.Log, reg: o.Registrar, counters: o.Counters, byName: map[string]*tunnel{},
		file: c.File(), publish: o.PublishPolicy}
	s.spd.Store(o.Policy)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		// Undo on failure; s is not the named result, which is nil then.
		if err != nil {
			s.cancel()
			for _, ep := range s.endpoints {
				ep.Close()
			}
			if s.dp != nil {
				s.dp.Close()
			}
		}
	}()
	for i := range c.Tunnels {
		ts, err := c.Tunnel(i)
		if err != nil {
			return nil, err
		}
		cred, err := c.Credentials(i)
		if err != nil {
			return nil, err
		}
		t := newTunnel(s, ts, cred, spec.Retransmit, ikeLog)
		t.cfg.NarrowTS = s.spdNarrower(ts.Name)
		if protects(o.Policy, ts.Name) {
			s.log.Info().Str("tunnel", ts.Name).Msg("traffic selectors from the SPD")
		}
		s.tunnels = append(s.tunnels, t)
		s.byName[ts.Name] = t
	}
	for _, a := range spec.Listen {
		ep, err := ike.Listen(ike.ListenConfig{
			Addr: a, Port: spec.Port, NATPort: spec.NATPort,
			CookieThreshold: spec.CookieThreshold, AlwaysCookie: spec.AlwaysCookie,
			MaxHalfOpen: spec.MaxHalfOpen, HalfOpenTimeout: spec.HalfOpenTimeout, Logger: ikeLog,
		})
		if err != nil {
			return nil, fmt.Errorf("ikeservice: %w", err)
		}
		s.endpoints = append(s.endpoints, ep)
		ikeAddr, nattAddr := ep.Addrs()
		s.log.Info().Stringer("ike", ikeAddr).Stringer("natt", nattAddr).Msg("IKE listening")
	}
	// The data plane goes in before any exchange can install a Child SA.
	// The ike: section allows it with one listen address only.
	if s.dp, s.dpStatus, err = openDataPlane(spec.DataPlane, s.endpoints[0], ikeLog); err != nil {
		return nil, err
	}
	ev := s.log.Info().Str("kind", s.dpStatus.Kind).Bool("kernel_esp", s.dpStatus.KernelESP).Str("reason", s.dpStatus.Reason)
	if s.dp != nil {
		ev = ev.Str("device", s.dpStatus.Device).Int("mtu", s.dpStatus.MTU)
		for _, t := range s.tunnels {
			// The wrapper installs each SA with its keys, then reports
			// it to the tunnel, which passes it on to the inline
			// registrar.
			t.cfg.Registrar = ike.WithDataPlane(t, s.dp)
		}
	}
	ev.Msg("data plane")
	var responders []*ike.Config
	for _, t := range s.tunnels {
		if t.ep, err = s.endpointFor(t.spec.Local); err != nil {
			return nil, fmt.Errorf("ikeservice: tunnel %s: %w", t.spec.Name, err)
		}
		if t.spec.Start != config.StartNone {
			responders = append(responders, t.cfg)
		}
	}
	for _, ep := range s.endpoints {
		if err := ep.Respond(responders...); err != nil {
			return nil, fmt.Errorf("ikeservice: %w", err)
		}
	}
	sock := spec.Socket
	if o.Socket != "" {
		sock = o.Socket
	}
	if sock != "-" {
		if s.control, err = listenControl(sock, s); err != nil {
			return nil, err
		}
		s.log.Info().Str("socket", sock).Msg("IKE control socket")
	}
	for _, t := range s.tunnels {
		if t.spec.Remote.IsValid() {
			s.wg.Go(func() { t.keeper(s.ctx) })
		}
	}
	return s, nil
}

// endpointFor picks the endpoint bound to local, else one bound to a
// wildcard address of its family, else (local unset) the first.
func (s *Service) endpointFor(local netip.Addr) (*ike.Endpoint, error) {
	if !local.IsValid() || local.IsUnspecified() {
		return s.endpoints[0], nil
	}
	var wildcard *ike.Endpoint
	for _, ep := range s.endpoints {
		a, _ := ep.Addrs()
		switch {
		case a.Addr().Unmap() == local:
			return ep, nil
		case a.Addr().IsUnspecified() && a.Addr().Unmap().Is4() == local.Is4() && wildcard == nil:
			wildcard = ep
		}
	}
	if wildcard == nil {
		return nil, fmt.Errorf("local_addr %v is not among the listen addresses of the ike: section", local)
	}
	return wildcard, nil
}

// Addrs returns the IKE and NAT-T addresses of each endpoint.
func (s *Service) Addrs() []Listener {
	var out []Listener
	for _, ep := range s.endpoints {
		a, b := ep.Addrs()
		out = append(out, Listener{IKE: a.String(), NATT: b.String()})
	}
	return out
}

// Status returns the state of every tunnel and of the data plane.
func (s *Service) Status() Status {
	dps := s.dpStatus
	st := Status{Listen: s.Addrs(), Tunnels: []TunnelStatus{}, DataPlane: &dps}
	dp := s.dataPlaneSAs(st.DataPlane)
	for _, t := range s.tunnels {
		st.Tunnels = append(st.Tunnels, t.status(dp))
	}
	return st
}

func (s *Service) tunnel(name string) (*tunnel, error) {
	t, ok := s.byName[name]
	if !ok {
		names := make([]string, 0, len(s.byName))
		for n := range s.byName {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownTunnel, name, names)
	}
	return t, nil
}

// Initiate brings the named tunnel up if it has no IKE SA and waits for it;
// a start tunnel is kept up again from now on.
func (s *Service) Initiate(ctx context.Context, name string) (TunnelStatus, error) {
	t, err := s.tunnel(name)
	if err != nil {
		return TunnelStatus{}, err
	}
	if err := s.ctx.Err(); err != nil {
		return TunnelStatus{}, ErrClosed
	}
	if !t.spec.Remote.IsValid() {
		return t.status(s.dataPlaneSAs(nil)), fmt.Errorf("%w: tunnel %s answers any peer; give it remote_addr to initiate", ErrNoRemote, name)
	}
	t.setKeep(t.spec.Start == config.StartStart)
	_, err = t.initiate(ctx)
	return t.status(s.dataPlaneSAs(nil)), err
}

// Terminate deletes the named tunnel's IKE SAs (and their Child SAs) with
// an INFORMATIONAL Delete each, waiting for the peer at most until ctx is
// done, and stops re-initiating it until the next Initiate.
func (s *Service) Terminate(ctx context.Context, name string) (TunnelStatus, error) {
	t, err := s.tunnel(name)
	if err != nil {
		return TunnelStatus{}, err
	}
	t.setKeep(false)
	n, err := t.terminate(ctx)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: %s", ErrNotEstablished, name)
	}
	return t.status(s.dataPlaneSAs(nil)), err
}

// Close stops initiating, deletes every IKE SA politely (waiting for the
// peers' answers until ctx is done), unregisters all Child SAs, and closes
// the sockets and the data plane. Later calls return the first call's
// result.
func (s *Service) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Service) close(ctx context.Context) error {
	s.cancel()
	if s.control != nil {
		s.control.close()
	}
	var wg sync.WaitGroup
	for _, t := range s.tunnels {
		t.setKeep(false)
		wg.Go(func() { t.terminate(ctx) })
	}
	wg.Wait()
	s.wg.Wait()
	var errs []error
	for _, ep := range s.endpoints {
		errs = append(errs, ep.Close())
	}
	// After the endpoints: no exchange installs an SA any more, and
	// what they unregister on closing is still removed from it.
	if s.dp != nil {
		if err := s.dp.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ikeservice: close data plane: %w", err))
		}
	}
	if s.control != nil {
		s.control.wait()
	}
	return errors.Join(errs...)
}

// retryDelay is the back-off before initiation attempt n (from 0) of a
// start tunnel: 1 s doubling to 2 min.
func retryDelay(n int) time.Duration {
	d := time.Second << min(n, 7)
	return min(d, 2*time.Minute)
}
