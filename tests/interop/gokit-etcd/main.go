// Command gokit-etcd registers and discovers the way a Go service built with go-kit does:
// through go-kit's etcd v3 registrar and instancer (github.com/go-kit/kit/sd/etcdv3) on top
// of the official etcd client (go.etcd.io/etcd/client/v3).
//
// It prints one JSON object per line on stdout:
//
//   - {"registered": "KEY"} once its registration is in etcd (with -register);
//   - {"instances": ["host:port", ...]} (sorted) or {"error": "..."} for each event of the
//     instancer (with -watch).
//
// The tests of sd-etcd build and run it to check that Go peers read our registrations and
// that we read theirs.
//
//	gokit-etcd -endpoints 127.0.0.1:2379 [-user U -password-env ETCD_PASSWORD]
//	           [-watch /services/web/]
//	           [-register /services/web/10.0.0.1:8080 -value 10.0.0.1:8080 -ttl 5s]
//
// SIGTERM or SIGINT deregisters (go-kit's Deregister deletes the key) and exits.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/etcdv3"
	"github.com/go-kit/log"
)

type line struct {
	Registered string   `json:"registered,omitempty"`
	Instances  []string `json:"instances"`
	Error      string   `json:"error,omitempty"`
}

type printer struct {
	mu  sync.Mutex
	out *json.Encoder
}

func (p *printer) print(record line) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.out.Encode(record); err != nil {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gokit-etcd:", err)
	os.Exit(1)
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	user := flag.String("user", "", "etcd user name")
	passwordEnv := flag.String("password-env", "", "environment variable holding the password")
	watch := flag.String("watch", "", "key prefix to discover (go-kit reads every value under it)")
	register := flag.String("register", "", "key to register")
	value := flag.String("value", "", "value to register (go-kit's instance string: host:port)")
	ttl := flag.Duration("ttl", 5*time.Second, "lease TTL of the registration")
	flag.Parse()
	if *watch == "" && *register == "" {
		fmt.Fprintln(os.Stderr, "gokit-etcd: give -watch PREFIX, -register KEY -value VALUE, or both")
		os.Exit(2)
	}

	options := etcdv3.ClientOptions{DialTimeout: 3 * time.Second, Username: *user}
	if *passwordEnv != "" {
		options.Password = os.Getenv(*passwordEnv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := log.NewLogfmtLogger(os.Stderr)
	out := &printer{out: json.NewEncoder(os.Stdout)}

	var registrar *etcdv3.Registrar
	if *register != "" {
		// Its own client: go-kit's client keeps one lease, and closes it on Deregister.
		client, err := etcdv3.NewClient(ctx, strings.Split(*endpoints, ","), options)
		if err != nil {
			fail(err)
		}
		service := etcdv3.Service{
			Key:   *register,
			Value: *value,
			TTL:   etcdv3.NewTTLOption(*ttl/3, *ttl),
		}
		registrar = etcdv3.NewRegistrar(client, service, logger)
		registrar.Register()
		if client.LeaseID() == 0 {
			fail(fmt.Errorf("registering %s failed (see the log above)", *register))
		}
		out.print(line{Registered: *register})
	}

	events := make(chan sd.Event, 16)
	if *watch != "" {
		client, err := etcdv3.NewClient(ctx, strings.Split(*endpoints, ","), options)
		if err != nil {
			fail(err)
		}
		instancer, err := etcdv3.NewInstancer(client, *watch, logger)
		if err != nil {
			fail(err)
		}
		defer instancer.Stop()
		instancer.Register(events)
		defer instancer.Deregister(events)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	for {
		select {
		case event := <-events:
			record := line{Instances: append([]string{}, event.Instances...)}
			sort.Strings(record.Instances)
			if event.Err != nil {
				record.Error = event.Err.Error()
			}
			out.print(record)
		case <-stop:
			if registrar != nil {
				registrar.Deregister()
			}
			return
		}
	}
}
