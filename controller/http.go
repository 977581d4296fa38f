package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is the answer of GET /v1/health.
type Health struct {
	// Role is "leader" or "standby"; Leader names the leader (when known).
	Role     string        `json:"role"`
	Instance string        `json:"instance"`
	Leader   string        `json:"leader,omitempty"`
	PID      int           `json:"pid"`
	Consul   string        `json:"consul"`
	Rollouts []RolloutInfo `json:"rollouts"`
}

// Handler serves the operational endpoints:
//
//	GET /v1/health  200 {role, instance, leader, pid, consul: "ok", rollouts: [...]};
//	                503 with the same body (consul: the error) when Consul does not answer
//	GET /metrics    the Prometheus metrics (text format)
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/health", s.serveHealth)
	mux.Handle("/metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{}))
	return mux
}

func (s *Service) serveHealth(w http.ResponseWriter, req *http.Request) {
	role, leader := s.Role()
	h := Health{Role: role, Instance: s.cfg.Name, Leader: leader, PID: os.Getpid(), Consul: "ok", Rollouts: s.Rollouts()}
	code := http.StatusOK
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if leader, err := s.op.Consul.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx)); err != nil || leader == "" {
		h.Consul, code = "Consul does not answer or has no leader", http.StatusServiceUnavailable
		if err != nil {
			h.Consul += ": " + err.Error()
		}
		s.m.APIError("consul")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(h)
}
