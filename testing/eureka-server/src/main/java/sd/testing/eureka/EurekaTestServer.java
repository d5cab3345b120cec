package sd.testing.eureka;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.netflix.eureka.server.EnableEurekaServer;

/** A standalone Eureka server tuned for tests (see application.properties). */
@SpringBootApplication
@EnableEurekaServer
public class EurekaTestServer {
    public static void main(String[] args) {
        SpringApplication.run(EurekaTestServer.class, args);
    }
}
