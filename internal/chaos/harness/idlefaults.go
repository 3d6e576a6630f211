package harness

import "fmt"

// IdleFailover fails over each master in turn (CLUSTER FAILOVER on its
// replica) while the clients are idle; the sweep follows cluster_state:ok.
func IdleFailover(s *Scenario, runs int) error {
	for run := range runs {
		for i := range 3 {
			sh, err := s.shard(i)
			if err != nil {
				return err
			}
			if len(sh.Replicas) == 0 {
				return fmt.Errorf("master %s has no replica", sh.Master.Addr)
			}
			replica := sh.Replicas[0]
			d, err := s.c.FailoverDelay(s.ctx, replica)
			if err != nil {
				return err
			}
			Sleep(s.ctx, d)
			if _, err := s.RunIdle(IdleFault{
				Name:   fmt.Sprintf("run %d: idle through CLUSTER FAILOVER on %s (master %s)", run+1, replica.Addr, sh.Master.Addr),
				Inject: func() ([]string, error) { return nil, s.c.Failover(s.ctx, replica) },
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// IdleKill kills a master with SIGKILL while the clients are idle; the
// sweep follows the replica's promotion (cluster_state:ok), and another
// one the restart of the killed node, which rejoins as a replica. runs
// times, on different shards.
func IdleKill(s *Scenario, runs int) error {
	for run := range runs {
		sh, err := s.shard(run % 3)
		if err != nil {
			return err
		}
		master := sh.Master
		if _, err := s.RunIdle(IdleFault{
			Name:   fmt.Sprintf("run %d: idle through kill -9 of master %s and the promotion", run+1, master.Announced()),
			Inject: func() ([]string, error) { return nil, master.Kill() },
		}); err != nil {
			return err
		}
		if _, err := s.RunIdle(IdleFault{
			Name:   fmt.Sprintf("run %d: idle through the restart of %s", run+1, master.Announced()),
			Inject: func() ([]string, error) { return nil, master.Restart(s.ctx) },
		}); err != nil {
			return err
		}
	}
	return nil
}

// IdleBlackHole partitions a master away while the clients are idle; the
// sweep follows its replica's promotion, another one the healing of the
// partition. runs times, on different shards.
func IdleBlackHole(s *Scenario, runs int) error {
	ps := s.Proxies()
	if ps == nil {
		return errNoProxies
	}
	for run := range runs {
		sh, err := s.shard(run % 3)
		if err != nil {
			return err
		}
		master, replica := sh.Master, sh.Replicas[0]
		if _, err := s.RunIdle(IdleFault{
			Name:    fmt.Sprintf("run %d: idle through a black hole around master %s and the promotion", run+1, master.Announced()),
			Inject:  func() ([]string, error) { ps.Partition(master); return nil, nil },
			Healthy: func() error { return WaitPromoted(s.ctx, s.c, replica, master) },
		}); err != nil {
			return err
		}
		if _, err := s.RunIdle(IdleFault{
			Name:   fmt.Sprintf("run %d: idle through the healing of %s's partition", run+1, master.Announced()),
			Inject: func() ([]string, error) { ps.Heal(master); return nil, nil },
		}); err != nil {
			return err
		}
	}
	return nil
}
