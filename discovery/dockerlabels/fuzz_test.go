package dockerlabels

import (
	"strings"
	"testing"
)

func FuzzParsePeerLabels(f *testing.F) {
	for _, s := range []string{"29015", "abc", "", " 29016 ", "0", "65536", "-1", "+5", "1e3", "٣"} {
		f.Add(s, "alpha", true)
	}
	f.Fuzz(func(t *testing.T, port, cluster string, hasPort bool) {
		labels := map[string]string{LabelCluster: cluster}
		if hasPort {
			labels[LabelClusterPort] = port
		}
		pl, err := ParsePeerLabels(labels)
		if err != nil {
			if !strings.Contains(err.Error(), LabelClusterPort) {
				t.Errorf("error %q does not name the label", err)
			}
			return
		}
		if pl.Port < 1 || pl.Port > 65535 {
			t.Errorf("port %d accepted from %q", pl.Port, port)
		}
		if pl.Cluster != strings.TrimSpace(cluster) {
			t.Errorf("cluster %q from %q", pl.Cluster, cluster)
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"io.rethinkdb.cluster=a", "k", "=v", "k=v=w", " k =v", "k\x00=v", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, term string) {
		s, err := ParseSelector([]string{term})
		if err != nil {
			return
		}
		if len(s) != 1 || s[0].Key == "" {
			t.Fatalf("%q parsed to %+v", term, s)
		}
		// A container carrying exactly the term's label matches it.
		labels := map[string]string{s[0].Key: s[0].Value}
		if !s.Match(labels) {
			t.Errorf("%q does not match %v", term, labels)
		}
	})
}

func FuzzContainerIDCandidates(f *testing.F) {
	f.Add("88 71 254:0 /var/lib/docker/containers/"+id1+"/hostname /etc/hostname rw - ext4 /dev/vda rw", "0::/docker/"+id2, "aad83f180c97")
	f.Fuzz(func(t *testing.T, mountinfo, cgroup, hostname string) {
		for _, id := range ContainerIDCandidates(mountinfo, cgroup, hostname) {
			if !hostnameIDRe.MatchString(id) {
				t.Errorf("candidate %q is not an id", id)
			}
		}
	})
}
