"""The ingestion stage's EC2 stream consumer: a Kinesis Client Library application on EC2.

Part of the ingestion template, built with `stages.ingestion.ec2_consumer.enabled`
(config/ingestion_ec2.py). The instances run the KCL 3.x MultiLangDaemon (amazon_kclpy, which
brings the KCL's jars) with the record processor of mlops_cfn/data/kcl_consumer, which checks
and counts each record with the consumer Lambda's own code (data/consumer.py) and reports the
same metrics.

Resources
- Ec2ConsumerLeaseTable: the KCL application's lease table; its name is the application's name
  (KCL's default), and KCL 3.x's two other tables are named after it:
  Ec2ConsumerWorkerMetricsTable (`<name>-WorkerMetricStats`) and Ec2ConsumerCoordinatorTable
  (`<name>-CoordinatorState`). The template creates all three, with the lease table's
  LeaseOwnerToLeaseKeyIndex, so the instances need no CreateTable or UpdateTable; each is
  encrypted with the data key, has point-in-time recovery and is retained (a stack created again
  after a deletion finds them by name: delete or keep them deliberately).
- Ec2ConsumerLaunchTemplate: Amazon Linux 2023 from AWS's public SSM parameter, IMDSv2 only (hop
  limit 1), root volume encrypted with the data key, no public address, no key pair, detailed
  monitoring; user data installs Java, the CloudWatch agent and amazon_kclpy, fetches the
  processor (asset kcl_consumer.zip) from the assets bucket and starts the daemon.
- Ec2ConsumerGroup: the Auto Scaling group across the private subnets, two or more instance
  types (mixed instances policy), group metrics on, rolling replacement on template changes.
- Ec2ConsumerScaleOutPolicy/Alarm, Ec2ConsumerScaleInPolicy/Alarm: step scaling on the stream's
  GetRecords.IteratorAgeMilliseconds, one instance at a time between min_size and max_size. The
  desired capacity is the policies' to set: a template value would reset it on every update.
- Ec2ConsumerRole, Ec2ConsumerInstanceProfile, Ec2ConsumerSecurityGroup (nothing in; HTTPS out,
  to AWS's endpoints and the package repositories), Ec2ConsumerLogGroup.
- Access is through Session Manager: no key pair, no inbound rule.

The data key's policy lets the Auto Scaling service-linked role use the key for the volumes
(`volumes_use_the_key`). KMS accepts a key policy only while the role it names exists: an account
that never had an Auto Scaling group must create it first (`aws iam create-service-linked-role
--aws-service-name autoscaling.amazonaws.com`).

Inputs: DataKeyArn, VpcId, PrivateSubnetIds, PrivateSubnetZones. Outputs: Ec2ConsumerGroupName,
Ec2ConsumerLeaseTableName.
"""

from pathlib import Path

import awacs.cloudwatch
import awacs.dynamodb
import awacs.kinesis
import awacs.kms
import awacs.logs
import awacs.ssm
import awacs.ssmmessages
from awacs.aws import Allow, Bool, Condition, Principal, Statement, StringEquals
from troposphere import (Base64, GetAtt, Ref, Select, Sub, autoscaling, cloudwatch, dynamodb,
                         ec2, iam, kinesis, logs)
from troposphere.policies import AutoScalingRollingUpdate, UpdatePolicy

from .. import assets, naming, policies
from ..assets import Asset
from ..config import PipelineConfig
from ..config.ingestion_ec2 import Ec2ConsumerConfig
from ..outputs import (EC2_CONSUMER_GROUP_NAME, EC2_CONSUMER_LEASE_TABLE_NAME, PRIVATE_SUBNET_IDS,
                       PRIVATE_SUBNET_ZONES, VPC_ID)
from ..stage import StageBuilder
from .common import HTTPS, RETAIN, ANYWHERE, encrypted_log_group

DATA = Path(__file__).resolve().parent.parent / "data"
PROCESSOR = DATA / "kcl_consumer" / "record_processor.py"
LAMBDA_CONSUMER = DATA / "consumer.py"
# The amazon_kclpy release the instances install (it brings KCL 3.1.x's jars).
KCLPY_VERSION = "3.1.3"
LEASE_INDEX = "LeaseOwnerToLeaseKeyIndex"
PERIOD_SECONDS = 60
SCALE_OUT_PERIODS = 3
SCALE_IN_PERIODS = 15
APP_DIR = "/opt/kcl-consumer"
LOG_DIR = "/var/log/kcl-consumer"
# AWS: "Service-linked roles for Amazon EC2 Auto Scaling": the default role's path and name.
AUTOSCALING_ROLE = ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
                    "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")


def add_ec2_consumer(b: StageBuilder, config: PipelineConfig, stream: kinesis.Stream,
                     key: Ref) -> None:
    settings = config.stages.ingestion.ec2_consumer
    application = b.physical_name(naming.KCL_LEASE_TABLE, "kcl-consumer")
    tables = [b.add(kcl_table(b, "Ec2ConsumerLeaseTable", application, "leaseKey", key,
                              lease_index=True))]
    for title, suffix, hash_key in (("Ec2ConsumerWorkerMetricsTable", "-WorkerMetricStats", "wid"),
                                    ("Ec2ConsumerCoordinatorTable", "-CoordinatorState", "key")):
        name = Sub(application.data["Fn::Sub"] + suffix)
        tables.append(b.add(kcl_table(b, title, name, hash_key, key)))
    log_group = encrypted_log_group(b, config, "Ec2ConsumerLogGroup", "kcl-consumer")
    app = b.asset("kcl_consumer.zip", assets.zip_files({
        "record_processor.py": PROCESSOR.read_bytes(),
        "consumer.py": LAMBDA_CONSUMER.read_bytes(),
    }))
    role = b.add(iam.Role(
        "Ec2ConsumerRole",
        Description="EC2 stream consumer instances (KCL)",
        AssumeRolePolicyDocument=policies.trusted_by("ec2.amazonaws.com"),
        Policies=[iam.Policy(
            PolicyName="kcl-consumer",
            PolicyDocument=policies.document(
                consumer_statements(stream, key, tables, application, log_group, app)),
        ), *b.asset_key_policies()],
    ))
    profile = b.add(iam.InstanceProfile("Ec2ConsumerInstanceProfile", Roles=[Ref(role)]))
    security_group = b.add(ec2.SecurityGroup(
        "Ec2ConsumerSecurityGroup",
        GroupDescription="EC2 stream consumer: nothing in; HTTPS out to AWS and package mirrors",
        VpcId=b.input(VPC_ID),
        # AWS's endpoints (Kinesis, DynamoDB, CloudWatch, Systems Manager) and, at boot, the
        # Amazon Linux repositories, PyPI and Maven Central (through the NAT gateways).
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            Description="HTTPS to AWS endpoints and package repositories", IpProtocol="tcp",
            FromPort=HTTPS, ToPort=HTTPS, CidrIp=ANYWHERE)],
    ))
    template = b.add(launch_template(b, config, settings, key, profile, security_group,
                                     user_data(config, stream, application, log_group, app)))
    group = b.add(auto_scaling_group(b, settings, template))
    add_scaling(b, settings, stream, group)
    volumes_use_the_key(b)
    b.output(EC2_CONSUMER_GROUP_NAME, Ref(group))
    b.output(EC2_CONSUMER_LEASE_TABLE_NAME, Ref(tables[0]))


def kcl_table(b: StageBuilder, title: str, name: Sub, hash_key: str, key: Ref, *,
              lease_index: bool = False) -> dynamodb.Table:
    """One of KCL 3.x's metadata tables, with the key schema KCL creates it with (its
    `leaseKey`, `wid` and `key` attributes; the lease table's index on `leaseOwner`)."""
    attributes = [dynamodb.AttributeDefinition(AttributeName=hash_key, AttributeType="S")]
    index = {}
    if lease_index:
        attributes.append(dynamodb.AttributeDefinition(AttributeName="leaseOwner",
                                                       AttributeType="S"))
        index["GlobalSecondaryIndexes"] = [dynamodb.GlobalSecondaryIndex(
            IndexName=LEASE_INDEX,
            KeySchema=[dynamodb.KeySchema(AttributeName="leaseOwner", KeyType="HASH"),
                       dynamodb.KeySchema(AttributeName=hash_key, KeyType="RANGE")],
            Projection=dynamodb.Projection(ProjectionType="KEYS_ONLY"),
        )]
    return dynamodb.Table(
        title,
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=attributes,
        KeySchema=[dynamodb.KeySchema(AttributeName=hash_key, KeyType="HASH")],
        SSESpecification=dynamodb.SSESpecification(SSEEnabled=True, SSEType="KMS",
                                                    KMSMasterKeyId=key),
        PointInTimeRecoverySpecification=dynamodb.PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True),
        **index,
        **RETAIN,
    )


def consumer_statements(stream: kinesis.Stream, key: Ref, tables: list[dynamodb.Table],
                        application: Sub, log_group: logs.LogGroup,
                        app: Asset) -> list[Statement]:
    stream_arn = GetAtt(stream, "Arn")
    lease, *others = tables
    table_names = [Ref(t) for t in tables]
    item_actions = [awacs.dynamodb.DescribeTable, awacs.dynamodb.GetItem,
                    awacs.dynamodb.PutItem, awacs.dynamodb.UpdateItem,
                    awacs.dynamodb.DeleteItem, awacs.dynamodb.Scan]
    return [
        # AWS: "IAM permissions required for KCL consumer applications": reading the stream
        # by polling (retrievalMode POLLING, so neither RegisterStreamConsumer nor
        # SubscribeToShard, which only enhanced fan-out uses).
        Statement(
            Effect=Allow,
            Action=[awacs.kinesis.DescribeStream, awacs.kinesis.DescribeStreamSummary,
                    awacs.kinesis.GetRecords, awacs.kinesis.GetShardIterator,
                    awacs.kinesis.ListShards],
            Resource=[stream_arn],
        ),
        # AWS: "Permissions to use user-generated KMS keys" (Kinesis Data Streams): consumers
        # of a stream encrypted with a customer managed key need Decrypt.
        policies.key_use_in_context(key, [awacs.kms.Decrypt], "kinesis", "aws:kinesis:arn",
                                    [stream_arn]),
        # AWS: "IAM permissions required for KCL consumer applications": the lease, worker
        # metrics and coordinator state tables' items, without CreateTable and UpdateTable: the
        # template creates the tables and the lease table's index.
        Statement(Effect=Allow, Action=item_actions,
                  Resource=[GetAtt(t, "Arn") for t in [lease, *others]]),
        # AWS: same page: Query on the lease table's index (lease discovery).
        Statement(Effect=Allow, Action=[awacs.dynamodb.Query],
                  Resource=[Sub("${%s.Arn}/index/%s" % (lease.title, LEASE_INDEX))]),
        # AWS: "How Amazon DynamoDB uses AWS KMS" (authorizing use of a customer managed key):
        # a principal using a table encrypted with the key, through DynamoDB, which names the
        # table in the encryption context.
        policies.key_use_in_context(key, [awacs.kms.Decrypt, awacs.kms.Encrypt,
                                          awacs.kms.GenerateDataKey], "dynamodb",
                                    "aws:dynamodb:tableName", table_names),
        # AWS: "Monitor the Kinesis Client Library with Amazon CloudWatch": KCL publishes its
        # metrics in a namespace named after the application; the condition keeps it there.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringEquals("cloudwatch:namespace", application)),
        ),
        # AWS: "Create IAM roles and users for use with the CloudWatch agent"
        # (CloudWatchAgentServerPolicy's log actions), narrowed to the consumer's log group,
        # which the template creates.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents,
                    awacs.logs.DescribeLogStreams],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        # AWS: "Create a custom IAM role for Session Manager" (Session Manager only, instead of
        # AmazonSSMManagedInstanceCore, whose other actions serve Run Command, State Manager,
        # Patch Manager and Inventory): the agent registers the instance...
        Statement(Effect=Allow, Action=[awacs.ssm.UpdateInstanceInformation],
                  Resource=[policies.arn("ec2", "instance/*")]),
        # AWS: same page: ...and opens the session channels; ssmmessages has no resource type.
        Statement(
            Effect=Allow,
            Action=[awacs.ssmmessages.CreateControlChannel,
                    awacs.ssmmessages.CreateDataChannel,
                    awacs.ssmmessages.OpenControlChannel,
                    awacs.ssmmessages.OpenDataChannel],
            Resource=["*"],
        ),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (Amazon S3 User Guide,
        # reading an object): the processor's package from the assets bucket.
        assets.read_statement([app.object_arn]),
    ]


def launch_template(b: StageBuilder, config: PipelineConfig, settings: Ec2ConsumerConfig,
                    key: Ref, profile: iam.InstanceProfile, security_group: ec2.SecurityGroup,
                    script: Sub) -> ec2.LaunchTemplate:
    ami = b.setting(settings, "ami_parameter")
    return ec2.LaunchTemplate(
        "Ec2ConsumerLaunchTemplate",
        LaunchTemplateData=ec2.LaunchTemplateData(
            # Resolved when the stack is deployed ("Get a plaintext value from Systems Manager
            # Parameter Store", CloudFormation User Guide): every update takes AWS's newest AMI.
            ImageId=Sub("{{resolve:ssm:${%s}}}" % ami.data["Ref"]),
            IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(profile, "Arn")),
            MetadataOptions=ec2.MetadataOptions(
                HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1),
            Monitoring=ec2.Monitoring(Enabled=True),
            NetworkInterfaces=[ec2.NetworkInterfaces(
                DeviceIndex=0, AssociatePublicIpAddress=False, DeleteOnTermination=True,
                Groups=[GetAtt(security_group, "GroupId")])],
            BlockDeviceMappings=[ec2.LaunchTemplateBlockDeviceMapping(
                DeviceName="/dev/xvda",  # Amazon Linux 2023's root device
                Ebs=ec2.EBSBlockDevice(
                    VolumeSize=b.setting(settings, "volume_size_gb"), VolumeType="gp3",
                    Encrypted=True, KmsKeyId=key, DeleteOnTermination=True),
            )],
            UserData=Base64(script),
        ),
    )


def auto_scaling_group(b: StageBuilder, settings: Ec2ConsumerConfig,
                       template: ec2.LaunchTemplate) -> autoscaling.AutoScalingGroup:
    types = b.setting(settings, "instance_types")
    return autoscaling.AutoScalingGroup(
        "Ec2ConsumerGroup",
        MinSize=b.setting(settings, "min_size"),
        MaxSize=b.setting(settings, "max_size"),
        VPCZoneIdentifier=b.input(PRIVATE_SUBNET_IDS),
        # The subnets' zones, named too: AWS Control Tower's CT.AUTOSCALING.PR.1 reads a group's
        # spread over zones from AvailabilityZones alone.
        AvailabilityZones=b.input(PRIVATE_SUBNET_ZONES),
        MixedInstancesPolicy=autoscaling.MixedInstancesPolicy(
            LaunchTemplate=autoscaling.LaunchTemplate(
                LaunchTemplateSpecification=autoscaling.LaunchTemplateSpecification(
                    LaunchTemplateId=Ref(template),
                    Version=GetAtt(template, "LatestVersionNumber")),
                # One override per configured type, in order of preference (the count is the
                # config's structure, the types are values).
                Overrides=[autoscaling.LaunchTemplateOverrides(InstanceType=Select(i, types))
                           for i in range(len(settings.instance_types))],
            ),
            InstancesDistribution=autoscaling.InstancesDistribution(
                OnDemandAllocationStrategy="prioritized", OnDemandBaseCapacity=0,
                OnDemandPercentageAboveBaseCapacity=100),
        ),
        HealthCheckType="EC2",
        HealthCheckGracePeriod=300,
        # The group's own metrics (in-service instances for the monitoring stage's alarm).
        MetricsCollection=[autoscaling.MetricsCollection(
            Granularity="1Minute",
            Metrics=["GroupInServiceInstances", "GroupDesiredCapacity"])],
        # A new launch template version (a new AMI, a new processor) replaces the instances one
        # at a time; KCL hands a stopped worker's shards to the others.
        UpdatePolicy=UpdatePolicy(AutoScalingRollingUpdate=AutoScalingRollingUpdate(
            MaxBatchSize=1, MinInstancesInService=0)),
    )


def add_scaling(b: StageBuilder, settings: Ec2ConsumerConfig, stream: kinesis.Stream,
                group: autoscaling.AutoScalingGroup) -> None:
    """Step scaling on how far the stream's readers lag: one instance more while the oldest
    unread record is older than scale_out_iterator_age_ms for three minutes, one fewer while it
    is younger than scale_in_iterator_age_ms for fifteen. Target tracking does not fit: it
    assumes a metric that falls as capacity rises in proportion (AWS: "Target tracking scaling
    policies for Amazon EC2 Auto Scaling", choosing metrics), which a lag does not. The stream's
    metric counts every reader (Firehose, the Lambda too), so a lag anywhere adds capacity."""
    for direction, change, setting, comparison, periods, missing in (
            ("Out", 1, "scale_out_iterator_age_ms", "GreaterThanThreshold", SCALE_OUT_PERIODS,
             "notBreaching"),
            ("In", -1, "scale_in_iterator_age_ms", "LessThanThreshold", SCALE_IN_PERIODS,
             # No reads reported while nothing arrives: nothing to keep capacity for.
             "breaching")):
        policy = b.add(autoscaling.ScalingPolicy(
            f"Ec2ConsumerScale{direction}Policy",
            AutoScalingGroupName=Ref(group),
            PolicyType="StepScaling",
            AdjustmentType="ChangeInCapacity",
            EstimatedInstanceWarmup=300,
            StepAdjustments=[autoscaling.StepAdjustments(
                ScalingAdjustment=change,
                **({"MetricIntervalLowerBound": 0} if change > 0
                   else {"MetricIntervalUpperBound": 0}))],
        ))
        b.add(cloudwatch.Alarm(
            f"Ec2ConsumerScale{direction}Alarm",
            AlarmDescription=f"ingestion: scale the EC2 stream consumer {direction.lower()}",
            Namespace="AWS/Kinesis",
            MetricName="GetRecords.IteratorAgeMilliseconds",
            Dimensions=[cloudwatch.MetricDimension(Name="StreamName", Value=Ref(stream))],
            Statistic="Maximum",
            Period=PERIOD_SECONDS,
            EvaluationPeriods=periods,
            DatapointsToAlarm=periods,
            ComparisonOperator=comparison,
            Threshold=b.setting(settings, setting),
            TreatMissingData=missing,
            AlarmActions=[Ref(policy)],
        ))


def volumes_use_the_key(b: StageBuilder) -> None:
    """Ask the data key's policy to let Auto Scaling launch instances whose volumes the key
    encrypts.

    AWS: "Required AWS KMS key policy for use with encrypted volumes" (Amazon EC2 Auto Scaling
    User Guide): the service-linked role uses the key directly, and creates grants for EC2, only
    for AWS resources. Its wildcard actions (ReEncrypt*, GenerateDataKey*) are written out.
    """
    role = Principal("AWS", Sub(AUTOSCALING_ROLE))
    b.data_key_use(Statement(
        Sid="VolumesByAutoScaling", Effect=Allow, Principal=role,
        Action=[awacs.kms.Encrypt, awacs.kms.Decrypt, awacs.kms.ReEncryptFrom,
                awacs.kms.ReEncryptTo, awacs.kms.GenerateDataKey,
                awacs.kms.GenerateDataKeyWithoutPlaintext, awacs.kms.DescribeKey],
        Resource=[policies.THIS_KEY]))
    b.data_key_use(Statement(
        Sid="VolumeGrantsByAutoScaling", Effect=Allow, Principal=role,
        Action=[awacs.kms.CreateGrant], Resource=[policies.THIS_KEY],
        Condition=Condition(Bool("kms:GrantIsForAWSResource", True))))


def user_data(config: PipelineConfig, stream: kinesis.Stream, application: Sub,
              log_group: logs.LogGroup, app: Asset) -> Sub:
    """The boot script: install the runtime, fetch the processor, configure and start the
    daemon and the CloudWatch agent. A `Sub` over the stack's names (`${...}`); shell
    variables are written without braces."""
    name = application.data["Fn::Sub"]
    return Sub(BOOT_SCRIPT
               .replace("@APPLICATION@", name)
               .replace("@STREAM@", "${%s}" % stream.title)
               .replace("@LOG_GROUP@", "${%s}" % log_group.title)
               .replace("@NAMESPACE@", f"MLOps/{config.project}")
               .replace("@APP_OBJECT@", "s3://${AssetsBucket}/${AssetsPrefix}" + app.key)
               .replace("@KCLPY@", KCLPY_VERSION)
               .replace("@APP_DIR@", APP_DIR)
               .replace("@LOG_DIR@", LOG_DIR))


BOOT_SCRIPT = """\
#!/bin/bash
# EC2 stream consumer (mlops-cfn): the KCL MultiLangDaemon with the bundled record processor.
set -euo pipefail
dnf install -y java-21-amazon-corretto-headless python3-pip amazon-cloudwatch-agent unzip
useradd --system --home-dir @APP_DIR@ kcl || true
mkdir -p @APP_DIR@/app @LOG_DIR@
python3 -m venv @APP_DIR@/venv
# amazon_kclpy's build downloads the KCL's jars from Maven Central.
@APP_DIR@/venv/bin/pip install --no-cache-dir amazon_kclpy==@KCLPY@
aws s3 cp @APP_OBJECT@ @APP_DIR@/app.zip
unzip -o @APP_DIR@/app.zip -d @APP_DIR@/app
cat > @APP_DIR@/kcl.properties <<'PROPERTIES'
executableName = @APP_DIR@/venv/bin/python @APP_DIR@/app/record_processor.py
streamName = @STREAM@
applicationName = @APPLICATION@
AWSCredentialsProvider = DefaultCredentialsProvider
processingLanguage = python/3
initialPositionInStream = LATEST
retrievalMode = POLLING
regionName = ${AWS::Region}
PROPERTIES
COMMAND=$(@APP_DIR@/venv/bin/python @APP_DIR@/venv/bin/amazon_kclpy_helper.py --print_command --java /usr/bin/java --properties @APP_DIR@/kcl.properties)
printf '#!/bin/sh\\nexec %s\\n' "$COMMAND" > @APP_DIR@/run
chmod 755 @APP_DIR@/run
chown -R kcl @APP_DIR@ @LOG_DIR@
cat > /etc/systemd/system/kcl-consumer.service <<'UNIT'
[Unit]
Description=KCL stream consumer
After=network-online.target
[Service]
User=kcl
WorkingDirectory=@APP_DIR@
Environment=METRICS_NAMESPACE=@NAMESPACE@ STREAM_NAME=@STREAM@ EVENTS_LOG=@LOG_DIR@/records.log
ExecStart=@APP_DIR@/run
StandardOutput=append:@LOG_DIR@/daemon.log
StandardError=append:@LOG_DIR@/daemon.log
Restart=always
RestartSec=10
[Install]
WantedBy=multi-user.target
UNIT
cat > @APP_DIR@/cloudwatch-agent.json <<'AGENT'
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "@LOG_DIR@/daemon.log", "log_group_name": "@LOG_GROUP@", "log_stream_name": "{instance_id}/daemon"},
  {"file_path": "@LOG_DIR@/records.log", "log_group_name": "@LOG_GROUP@", "log_stream_name": "{instance_id}/records"}
]}}}}
AGENT
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:@APP_DIR@/cloudwatch-agent.json
systemctl daemon-reload
systemctl enable --now kcl-consumer
"""
