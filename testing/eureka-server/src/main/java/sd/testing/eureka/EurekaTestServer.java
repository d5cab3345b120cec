package sd.testing.eureka;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.netflix.eureka.server.EnableEurekaServer;
import org.springframework.context.annotation.Bean;
import org.springframework.security.config.Customizer;
import org.springframework.security.config.annotation.web.builders.HttpSecurity;
import org.springframework.security.config.http.SessionCreationPolicy;
import org.springframework.security.web.SecurityFilterChain;

/**
 * A standalone Eureka server tuned for tests (see application.properties).
 *
 * <p>Every path asks for HTTP basic auth as {@code spring.security.user.name} /
 * {@code spring.security.user.password}, with no session (each request authenticates) and no
 * CSRF token (Eureka clients send none). {@code --sd.auth.enabled=false} serves everyone.
 */
@SpringBootApplication
@EnableEurekaServer
public class EurekaTestServer {
    public static void main(String[] args) {
        SpringApplication.run(EurekaTestServer.class, args);
    }

    @Bean
    SecurityFilterChain security(HttpSecurity http, @Value("${sd.auth.enabled:true}") boolean auth)
            throws Exception {
        http.csrf(csrf -> csrf.disable());
        http.sessionManagement(s -> s.sessionCreationPolicy(SessionCreationPolicy.STATELESS));
        if (auth) {
            http.authorizeHttpRequests(a -> a.anyRequest().authenticated());
            http.httpBasic(Customizer.withDefaults());
        } else {
            http.authorizeHttpRequests(a -> a.anyRequest().permitAll());
        }
        return http.build();
    }
}
