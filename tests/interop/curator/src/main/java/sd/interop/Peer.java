package sd.interop;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.springframework.cloud.commons.util.InetUtils;
import org.springframework.cloud.commons.util.InetUtilsProperties;
import org.springframework.cloud.zookeeper.discovery.ZookeeperDiscoveryClient;
import org.springframework.cloud.zookeeper.discovery.ZookeeperDiscoveryProperties;
import org.springframework.cloud.zookeeper.discovery.ZookeeperInstance;
import org.springframework.cloud.zookeeper.serviceregistry.ServiceInstanceRegistration;
import org.springframework.cloud.zookeeper.serviceregistry.ZookeeperServiceRegistry;

/**
 * Registers and discovers the way JVM services do on ZooKeeper, for the sd-zookeeper tests:
 * with Spring Cloud Zookeeper 4.1's own classes (ZookeeperServiceRegistry,
 * ZookeeperDiscoveryClient, over a ServiceDiscovery built as its auto-configuration builds it)
 * or with Apache Curator's service discovery and a Map payload.
 *
 * <pre>
 * peer register --connect HOST:PORT[/chroot] --service web --id ID --address A --port P
 *               [--payload spring|map] [--base /services] [--meta k=v]... [--digest user:password]
 *     prints {"registered": ID}, keeps the registration until standard input closes.
 * peer watch --connect HOST:PORT[/chroot] --service web [--payload spring|map] [--base /services]
 *     prints {"instances": [{"id","address","port","metadata"}, ...]} (sorted by id) or
 *     {"error": "..."} each time what it discovers changes (it asks every 100 ms).
 * </pre>
 */
public final class Peer {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "";
        Map<String, String> opts = new HashMap<>();
        Map<String, String> meta = new LinkedHashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            String key = args[i].replaceFirst("^--", "");
            if (key.equals("meta")) {
                String[] kv = args[i + 1].split("=", 2);
                meta.put(kv[0], kv.length > 1 ? kv[1] : "");
            } else {
                opts.put(key, args[i + 1]);
            }
        }
        String base = opts.getOrDefault("base", "/services");
        boolean spring = opts.getOrDefault("payload", "spring").equals("spring");
        CuratorFrameworkFactory.Builder builder = CuratorFrameworkFactory.builder()
                .connectString(opts.get("connect"))
                .sessionTimeoutMs(4000)
                .connectionTimeoutMs(10000)
                .retryPolicy(new ExponentialBackoffRetry(100, 5));
        if (opts.containsKey("digest")) {
            builder.authorization("digest", opts.get("digest").getBytes(StandardCharsets.UTF_8));
        }
        try (CuratorFramework curator = builder.build()) {
            curator.start();
            curator.blockUntilConnected();
            if (mode.equals("register")) {
                register(curator, base, spring, opts, meta);
            } else if (mode.equals("watch")) {
                watch(curator, base, spring, opts.get("service"));
            } else {
                System.err.println("usage: peer register|watch --connect ... --service ...");
                System.exit(2);
            }
        }
    }

    private static void register(CuratorFramework curator, String base, boolean spring,
            Map<String, String> opts, Map<String, String> meta) throws Exception {
        String service = opts.get("service");
        String id = opts.get("id");
        String address = opts.get("address");
        int port = Integer.parseInt(opts.get("port"));
        if (spring) {
            ServiceDiscovery<ZookeeperInstance> discovery = springDiscovery(curator, base);
            ZookeeperServiceRegistry registry = new ZookeeperServiceRegistry(discovery);
            registry.afterSingletonsInstantiated();
            // As ZookeeperAutoServiceRegistrationAutoConfiguration builds it.
            Map<String, String> metadata = new LinkedHashMap<>(meta);
            metadata.put("instance_status", "UP");
            ServiceInstanceRegistration registration = ServiceInstanceRegistration.builder()
                    .address(address).port(port).name(service).id(id)
                    .payload(new ZookeeperInstance(service, service, metadata))
                    .uriSpec(ZookeeperDiscoveryProperties.DEFAULT_URI_SPEC)
                    .build();
            registry.register(registration);
            announce(id);
            waitForStdinToClose();
            registry.deregister(registration);
            registry.close();
        } else {
            @SuppressWarnings({"rawtypes", "unchecked"})
            ServiceDiscovery<Map> discovery = ServiceDiscoveryBuilder.builder(Map.class)
                    .client(curator).basePath(base)
                    .serializer(new JsonInstanceSerializer<>(Map.class)).build();
            discovery.start();
            @SuppressWarnings("rawtypes")
            ServiceInstance<Map> instance = ServiceInstance.<Map>builder()
                    .name(service).id(id).address(address).port(port)
                    .payload(new LinkedHashMap<>(meta))
                    .uriSpec(new UriSpec("{scheme}://{address}:{port}"))
                    .build();
            discovery.registerService(instance);
            announce(id);
            waitForStdinToClose();
            discovery.unregisterService(instance);
            discovery.close();
        }
    }

    private static ServiceDiscovery<ZookeeperInstance> springDiscovery(CuratorFramework curator,
            String base) {
        // As Spring Cloud Zookeeper's DefaultServiceDiscoveryCustomizer builds it.
        return ServiceDiscoveryBuilder.builder(ZookeeperInstance.class)
                .client(curator).basePath(base)
                .serializer(new JsonInstanceSerializer<>(ZookeeperInstance.class)).build();
    }

    private static void watch(CuratorFramework curator, String base, boolean spring, String service)
            throws Exception {
        ServiceDiscovery<ZookeeperInstance> springDiscovery = springDiscovery(curator, base);
        springDiscovery.start();
        ZookeeperDiscoveryClient client = new ZookeeperDiscoveryClient(springDiscovery, null,
                new ZookeeperDiscoveryProperties(new InetUtils(new InetUtilsProperties())));
        @SuppressWarnings({"rawtypes", "unchecked"})
        ServiceDiscovery<Map> mapDiscovery = ServiceDiscoveryBuilder.builder(Map.class)
                .client(curator).basePath(base)
                .serializer(new JsonInstanceSerializer<>(Map.class)).build();
        mapDiscovery.start();
        String last = null;
        while (true) {
            Map<String, Object> line = new TreeMap<>();
            try {
                List<Map<String, Object>> found = new ArrayList<>();
                if (spring) {
                    for (org.springframework.cloud.client.ServiceInstance i : client.getInstances(service)) {
                        found.add(entry(i.getInstanceId(), i.getHost(), i.getPort(), i.getMetadata()));
                    }
                } else {
                    for (@SuppressWarnings("rawtypes") ServiceInstance<Map> i : mapDiscovery.queryForInstances(service)) {
                        found.add(entry(i.getId(), i.getAddress(), i.getPort(), i.getPayload()));
                    }
                }
                found.sort(Comparator.comparing(m -> String.valueOf(m.get("id"))));
                line.put("instances", found);
            } catch (Exception e) {
                line.put("error", e.toString());
            }
            String text = JSON.writeValueAsString(line);
            if (!text.equals(last)) {
                System.out.println(text);
                System.out.flush();
                last = text;
            }
            Thread.sleep(100);
        }
    }

    private static Map<String, Object> entry(String id, String address, Integer port, Map<?, ?> metadata) {
        Map<String, Object> entry = new TreeMap<>();
        entry.put("id", id);
        entry.put("address", address);
        entry.put("port", port);
        entry.put("metadata", metadata == null ? Map.of() : new TreeMap<>(metadata));
        return entry;
    }

    private static void announce(String id) throws Exception {
        System.out.println(JSON.writeValueAsString(Map.of("registered", id)));
        System.out.flush();
    }

    private static void waitForStdinToClose() throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        while (in.readLine() != null) {
            // until EOF
        }
    }
}
