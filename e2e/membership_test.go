package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// memberList is member i's etcdvisor's view of the members.
func (c *Cluster) memberList(i int) api.MemberList {
	c.t.Helper()
	out, errOut, code := runCLI(c.t, "member", "list", "-w", "json", "--config", c.Members[i].configPath())
	if code != 0 {
		c.t.Fatalf("member list from %s: exit %d %s", c.Members[i].name, code, errOut)
	}
	var ml api.MemberList
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		c.t.Fatal(err)
	}
	return ml
}

// waitVoters waits until member i sees exactly the named members (in
// name order), all voters, all healthy.
func (c *Cluster) waitVoters(i int, names ...string) {
	c.t.Helper()
	want := strings.Join(names, ",")
	var got []string
	for deadline := time.Now().Add(2 * waitLimit); ; time.Sleep(200 * time.Millisecond) {
		got = got[:0]
		for _, m := range c.memberList(i).Members {
			s := m.Name
			if m.IsLearner {
				s += "(learner)"
			}
			if !m.Healthy {
				s += "(unhealthy)"
			}
			got = append(got, s)
		}
		slices.Sort(got)
		if strings.Join(got, ",") == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("members seen from %s: %v, want %s", c.Members[i].name, got, want)
		}
	}
}

// joinRecord reads the journalled join of name from the cluster.
func (c *Cluster) joinRecord(ctx context.Context, name string) cluster.JoinRecord {
	c.t.Helper()
	resp, err := c.Client(0).Get(ctx, cluster.JoinsPrefix+name)
	if err != nil || len(resp.Kvs) != 1 {
		c.t.Fatalf("join record of %s: %v %v", name, resp, err)
	}
	var rec cluster.JoinRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		c.t.Fatal(err)
	}
	return rec
}

func TestAFailedMemberIsReplacedByANewHost(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1), WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()

	// c dies with its disk.
	c.Procs[2].signal(syscall.SIGKILL)
	if err := os.RemoveAll(c.Members[2].dataDir()); err != nil {
		t.Fatal(err)
	}
	d := c.Joiner(3, "c", 0, 1)
	pd := c.Join(d)
	pd.waitReady()
	c.waitVoters(0, "a", "b", "d")
	rec := c.joinRecord(ctx, "d")
	if rec.Step != cluster.StepPromoted || rec.RemovedID == "" || rec.Replaces != "c" {
		t.Errorf("join record: %+v, want step promoted, c removed", rec)
	}
	c.Members, c.Procs = append(c.Members[:2], d), append(c.Procs[:2], pd)
	c.CheckHealthy(2)
	c.Stop()
}
