import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

/**
 * Creates ALLOW ACLs through the Admin API, for the secured test broker
 * (testcontainers/src/broker.rs). Kafka 4 moved the kafka-acls tool into
 * kafka-tools, which the broker's jars do not hold; kafka-clients' Admin
 * is there. Run in source-file mode:
 *
 *   java -cp 'lib/*' Acls.java BOOTSTRAP (PRINCIPAL RESOURCE_TYPE PATTERN_TYPE NAME OPERATION)...
 *
 * e.g. User:alice TOPIC PREFIXED it ALL.
 */
public class Acls {
    public static void main(String[] args) throws Exception {
        if (args.length < 6 || (args.length - 1) % 5 != 0) {
            System.err.println("usage: Acls BOOTSTRAP (PRINCIPAL RESOURCE_TYPE PATTERN_TYPE NAME OPERATION)...");
            System.exit(2);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (int i = 1; i < args.length; i += 5) {
            ResourcePattern pattern = new ResourcePattern(
                ResourceType.fromString(args[i + 1]), args[i + 3], PatternType.fromString(args[i + 2]));
            AccessControlEntry entry = new AccessControlEntry(
                args[i], "*", AclOperation.fromString(args[i + 4]), AclPermissionType.ALLOW);
            bindings.add(new AclBinding(pattern, entry));
        }
        Properties properties = new Properties();
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(properties)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("created " + bindings.size() + " acls");
    }
}
