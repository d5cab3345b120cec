package sd.interop.eureka;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.context.event.EventListener;

/**
 * Registers itself with Eureka through Spring Cloud's own client (name, port, metadata from
 * the command line: --spring.application.name, --server.port,
 * --eureka.instance.metadata-map.KEY=VALUE) and, for each service named by --sd.watch
 * (comma-separated), prints one JSON line each time the list its DiscoveryClient gives
 * changes: {"service": ..., "instances": [{"instanceId", "host", "port", "secure",
 * "metadata"}]}, instances sorted by id. Stops (and deregisters) on SIGTERM.
 */
@SpringBootApplication
public class EurekaPeer {
    private final DiscoveryClient discovery;
    private final ObjectMapper json = new ObjectMapper();
    private final String[] watched;

    public EurekaPeer(DiscoveryClient discovery, @Value("${sd.watch:}") String watch) {
        this.discovery = discovery;
        this.watched = watch.isBlank() ? new String[0] : watch.split(",");
    }

    public static void main(String[] args) {
        SpringApplication.run(EurekaPeer.class, args);
    }

    @EventListener(ApplicationReadyEvent.class)
    public void watch() {
        Thread thread = new Thread(this::loop, "sd-peer-watch");
        thread.setDaemon(true);
        thread.start();
    }

    private void loop() {
        Map<String, String> last = new TreeMap<>();
        while (true) {
            for (String service : watched) {
                try {
                    String line = describe(service, discovery.getInstances(service));
                    if (!line.equals(last.get(service))) {
                        last.put(service, line);
                        System.out.println(line);
                        System.out.flush();
                    }
                } catch (Exception e) {
                    System.err.println("sd-peer: " + e);
                }
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private String describe(String service, List<ServiceInstance> instances) throws Exception {
        List<Map<String, Object>> listed = new ArrayList<>();
        for (ServiceInstance instance : instances) {
            Map<String, Object> item = new LinkedHashMap<>();
            item.put("instanceId", instance.getInstanceId());
            item.put("host", instance.getHost());
            item.put("port", instance.getPort());
            item.put("secure", instance.isSecure());
            item.put("metadata", new TreeMap<>(instance.getMetadata()));
            listed.add(item);
        }
        listed.sort(Comparator.comparing(item -> String.valueOf(item.get("instanceId"))));
        Map<String, Object> event = new LinkedHashMap<>();
        event.put("service", service);
        event.put("instances", listed);
        return json.writeValueAsString(event);
    }
}
