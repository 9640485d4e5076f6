"""The serving stage's batch transform: predictions for a whole S3 prefix, with no code to write.

Resources
- BatchTransformStateMachine (Step Functions, standard): checks that a model is deployed, then
  runs a SageMaker transform job over `s3://<processed>/<input_prefix>[<subPrefix>]` and waits
  for it; results go to `s3://<processed>/<output_prefix><execution name>/`, encrypted with the
  data key (the job's volume too). Start it on demand with input `{}` or
  `{"subPrefix": "2024-06-01/"}`. Execution history is logged to BatchTransformLogGroup (KMS,
  retention) and traced with X-Ray.
- BatchTransformRole: the state machine's role: transform jobs of its own name prefix only.
- BatchTransformSchedule (EventBridge Scheduler, input encrypted with the data key) with
  BatchTransformScheduleRole: starts the state machine on BatchTransformSchedule while
  BatchTransformScheduleState is ENABLED.

Inputs: DataKeyArn, ProcessedBucketName.
Outputs: BatchTransformStateMachineArn.

The state machine's definition and execution history are encrypted with the data key as well
as Step Functions' own. Its role uses the key for the machine's encryption context only, and
for the vended log delivery to BatchTransformLogGroup; the stage asks the key's policy to let
CloudWatch Logs' delivery service decrypt what it delivers (`log_delivery_uses_the_key`; AWS's
documented pair of grants).
"""

from typing import Any

import awacs.events
import awacs.kms
import awacs.logs
import awacs.sagemaker
import awacs.states
import awacs.xray
from awacs.aws import Allow, Bool, Condition, Statement, StringEquals, StringLike
from troposphere import GetAtt, Ref, Sub, iam, scheduler, stepfunctions

from .. import naming, policies
from ..config import PipelineConfig
from ..config.serving import BatchTransformConfig
from ..outputs import BATCH_TRANSFORM_STATE_MACHINE_ARN, DATA_KEY_ARN, PROCESSED_BUCKET_NAME
from ..stage import StageBuilder
from .common import encrypted_log_group
from .serving_common import SCHEDULE, TRANSFORM_JOB_PREFIX, name_pattern

# Step Functions' rule that reports the end of SageMaker transform jobs to `.sync` tasks.
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"
# A transform job that runs longer is stuck; the state machine gives up and says so.
TRANSFORM_TIMEOUT_SECONDS = 24 * 3600
SCHEDULE_RETRY_ATTEMPTS = 3
# How long Step Functions reuses a data key before asking KMS for another (its default).
DATA_KEY_REUSE_SECONDS = 300


def add_batch_transform(b: StageBuilder, config: PipelineConfig,
                        model_name: Any) -> stepfunctions.StateMachine:
    batch = config.stages.serving.sagemaker.batch_transform
    key = b.input(DATA_KEY_ARN)
    job_prefix = name_pattern(b, TRANSFORM_JOB_PREFIX, "bt")
    # Named, so that the role and the schedule can name the machine's ARN in the encryption
    # context their key use is limited to (a Ref would make a cycle with the role).
    machine_name = name_pattern(b, naming.STATE_MACHINE, "batch-transform")
    machine_arn = policies.arn("states", f"stateMachine:{machine_name}")
    log_group = encrypted_log_group(b, config, "BatchTransformLogGroup", "batch-transform")
    role = b.add(iam.Role(
        "BatchTransformRole",
        Description="Step Functions: run the serving model's batch transform jobs",
        AssumeRolePolicyDocument=policies.trusted_by(
            "states.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="batch-transform",
            PolicyDocument=policies.document(
                state_machine_statements(job_prefix, key, machine_arn)),
        )],
    ))
    machine = b.add(stepfunctions.StateMachine(
        "BatchTransformStateMachine",
        StateMachineName=Sub(machine_name),
        StateMachineType="STANDARD",
        RoleArn=GetAtt(role, "Arn"),
        Definition=definition(batch),
        DefinitionSubstitutions={
            # The whole ARN, not just its partition: a task's Resource must read as an ARN.
            "TransformTask": Sub(
                "arn:${AWS::Partition}:states:::sagemaker:createTransformJob.sync"),
            "JobPrefix": Sub(job_prefix),
            "ModelName": model_name,
            "ProcessedBucket": b.input(PROCESSED_BUCKET_NAME),
            "DataKeyArn": key,
            "InstanceType": b.setting(batch, "instance_type"),
            "InstanceCount": b.setting(batch, "instance_count"),
        },
        # Logged through CloudWatch Logs' vended delivery (`log_delivery_uses_the_key`).
        LoggingConfiguration=stepfunctions.LoggingConfiguration(
            Level="ALL",
            # Execution data holds S3 locations and job names only, but stays out of the logs
            # anyway: the history in Step Functions has it for those allowed to read it.
            IncludeExecutionData=False,
            Destinations=[stepfunctions.LogDestination(
                CloudWatchLogsLogGroup=stepfunctions.CloudWatchLogsLogGroup(
                    LogGroupArn=GetAtt(log_group, "Arn")))],
        ),
        TracingConfiguration=stepfunctions.TracingConfiguration(Enabled=True),
        # The definition and the execution history (S3 locations, job names) under the data
        # key as well as AWS's own.
        EncryptionConfiguration=stepfunctions.EncryptionConfiguration(
            Type="CUSTOMER_MANAGED_KMS_KEY", KmsKeyId=key,
            KmsDataKeyReusePeriodSeconds=DATA_KEY_REUSE_SECONDS),
    ))
    log_delivery_uses_the_key(b)
    add_schedule(b, batch, machine, key, machine_arn)
    b.output(BATCH_TRANSFORM_STATE_MACHINE_ARN, Ref(machine))
    return machine


def log_delivery_uses_the_key(b: StageBuilder) -> None:
    """Ask the data key's policy to let CloudWatch Logs' vended delivery decrypt what the state
    machine, encrypted with the key, logs: it does so as itself.

    AWS: "Data at rest encryption in Step Functions" (logging with a customer managed key).
    Only for sources of this account.
    """
    b.data_key_use(policies.key_use_by_service(
        "LogDeliveryByCloudWatchLogs", "delivery.logs.amazonaws.com", [awacs.kms.Decrypt],
        StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))))


def definition(batch: BatchTransformConfig) -> dict:
    """The state machine in Amazon States Language, as data. `${...}` are
    DefinitionSubstitutions, filled in by CloudFormation."""
    return {
        "Comment": "Batch transform with the served model over a prefix of the processed bucket",
        "StartAt": "Defaults",
        "States": {
            "Defaults": {
                "Type": "Pass",
                "Result": {"subPrefix": ""},
                "ResultPath": "$.defaults",
                "Next": "Arguments",
            },
            "Arguments": {
                "Type": "Pass",
                "Parameters": {
                    "modelName": "${ModelName}",
                    "options.$": "States.JsonMerge($.defaults, $, false)",
                },
                "Next": "ModelDeployed",
            },
            "ModelDeployed": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.modelName", "StringEquals": "",
                             "Next": "NoModelYet"}],
                "Default": "Transform",
            },
            "NoModelYet": {
                "Type": "Fail",
                "Error": "NoModelDeployed",
                "Cause": "The serving stack has no model yet: set ModelPackageArn (or "
                         "ModelDataUrl and ModelImageUri) and update the stack.",
            },
            "Transform": {
                "Type": "Task",
                "Resource": "${TransformTask}",
                "TimeoutSeconds": TRANSFORM_TIMEOUT_SECONDS,
                "Parameters": transform_job(batch),
                "Retry": [{
                    "ErrorEquals": ["SageMaker.AmazonSageMakerException"],
                    "IntervalSeconds": 30,
                    "MaxAttempts": 3,
                    "BackoffRate": 2,
                }],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "TransformFailed"}],
                "End": True,
            },
            "TransformFailed": {
                "Type": "Fail",
                "Error": "TransformFailed",
                "Cause": "The transform job failed or timed out; its FailureReason and logs in "
                         "/aws/sagemaker/TransformJobs say why.",
            },
        },
    }


def transform_job(batch: BatchTransformConfig) -> dict:
    """CreateTransformJob's request. The instance count arrives as text and becomes a number
    through States.StringToJson."""
    return {
        "TransformJobName.$": "States.Format('${JobPrefix}-{}', States.UUID())",
        "ModelName.$": "$.modelName",
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri.$": ("States.Format('s3://${ProcessedBucket}/" + batch.input_prefix
                            + "{}', $.options.subPrefix)"),
            }},
            "ContentType": batch.content_type,
            "SplitType": batch.split_type,
        },
        "TransformOutput": {
            "S3OutputPath.$": ("States.Format('s3://${ProcessedBucket}/" + batch.output_prefix
                               + "{}/', $$.Execution.Name)"),
            "KmsKeyId": "${DataKeyArn}",
            "AssembleWith": "Line" if batch.split_type == "Line" else "None",
        },
        "TransformResources": {
            "InstanceType": "${InstanceType}",
            "InstanceCount.$": "States.StringToJson('${InstanceCount}')",
            "VolumeKmsKeyId": "${DataKeyArn}",
        },
    }


def state_machine_statements(job_prefix: str, key: Ref, machine_arn: Sub) -> list[Statement]:
    jobs = policies.arn("sagemaker", f"transform-job/{job_prefix}-*")
    via_sagemaker = StringEquals("kms:ViaService", Sub("sagemaker.${AWS::Region}.amazonaws.com"))
    return [
        # AWS: "Data at rest encryption in Step Functions": Step Functions reads and writes the
        # machine's encrypted definition and history with this role, in the machine's
        # encryption context (kms:Decrypt and kms:GenerateDataKey for the execution role).
        key_use_by_machine(key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey], machine_arn),
        # AWS: same page ("Encrypting logs"): and encrypts what it hands to CloudWatch Logs'
        # vended delivery for the execution log (kms:GenerateDataKey with the logs SourceArn).
        Statement(
            Effect=Allow, Action=[awacs.kms.GenerateDataKey], Resource=[key],
            Condition=Condition(StringLike("kms:EncryptionContext:SourceArn",
                                           policies.arn("logs", "*"))),
        ),
        # AWS: "Create and manage Amazon SageMaker AI jobs with Step Functions" (IAM policies,
        # CreateTransformJob, synchronous): create, describe and stop the job, list its tags.
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.CreateTransformJob, awacs.sagemaker.DescribeTransformJob,
                    awacs.sagemaker.StopTransformJob, awacs.sagemaker.ListTags],
            Resource=[jobs],
        ),
        # A `.sync` task tags the job it creates (MANAGED_BY_AWS: STARTED_BY_STEP_FUNCTIONS);
        # without sagemaker:AddTags the job is refused with AccessDeniedException. The page
        # above omits it; AWS: https://github.com/aws/aws-cdk/issues/26012 (AWS's CDK adds it
        # to its generated policy for this task).
        Statement(Effect=Allow, Action=[awacs.sagemaker.AddTags], Resource=[jobs]),
        # AWS: same page: `.sync` learns of the job's end through a rule Step Functions manages.
        Statement(
            Effect=Allow,
            Action=[awacs.events.PutTargets, awacs.events.PutRule, awacs.events.DescribeRule],
            Resource=[policies.arn("events", f"rule/{SYNC_RULE}")],
        ),
        # AWS: "Amazon SageMaker AI API Permissions: Actions, Permissions, and Resources
        # Reference" (CreateTransformJob: kms:CreateGrant): SageMaker encrypts the job's volume
        # with VolumeKmsKeyId through a grant it creates with the caller's permission.
        # kms:GrantIsForAWSResource exists on grant requests only (AWS KMS, Controlling access
        # to grants).
        Statement(
            Effect=Allow,
            Action=[awacs.kms.CreateGrant],
            Resource=[key],
            Condition=Condition([via_sagemaker, Bool("kms:GrantIsForAWSResource", "true")]),
        ),
        # AWS: "Requirements for Amazon EBS encryption" ("Permissions for users":
        # kms:DescribeKey beside kms:CreateGrant): the volume is an EBS volume under the
        # caller's key; a
        # describe request has no grant condition key, so it has a statement of its own,
        # through SageMaker only.
        Statement(Effect=Allow, Action=[awacs.kms.DescribeKey], Resource=[key],
                  Condition=Condition(via_sagemaker)),
        # AWS: "Using CloudWatch Logs to log execution history in Step Functions" (IAM policies
        # for logging to CloudWatch Logs) and "Trace Step Functions request data in AWS X-Ray"
        # (IAM policies for X-Ray): these actions have no resource-level permissions, AWS
        # accepts nothing narrower than "*".
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogDelivery, awacs.logs.DeleteLogDelivery,
                    awacs.logs.DescribeLogGroups, awacs.logs.DescribeResourcePolicies,
                    awacs.logs.GetLogDelivery, awacs.logs.ListLogDeliveries,
                    awacs.logs.PutResourcePolicy, awacs.logs.UpdateLogDelivery,
                    awacs.xray.GetSamplingRules, awacs.xray.GetSamplingTargets,
                    awacs.xray.PutTelemetryRecords, awacs.xray.PutTraceSegments],
            Resource=["*"],
        ),
    ]


def key_use_by_machine(key: Ref, actions: list, machine_arn: Sub) -> Statement:
    """Use of the data key for this state machine's data only (Step Functions' encryption
    context is the machine's ARN: AWS: "Data at rest encryption in Step Functions")."""
    return Statement(
        Effect=Allow, Action=actions, Resource=[key],
        Condition=Condition(StringEquals("kms:EncryptionContext:aws:states:stateMachineArn",
                                         machine_arn)),
    )


def add_schedule(b: StageBuilder, batch: BatchTransformConfig,
                 machine: stepfunctions.StateMachine, key: Ref,
                 machine_arn: Sub) -> scheduler.Schedule:
    name = name_pattern(b, SCHEDULE, "batch-transform")
    schedule_arn = policies.arn("scheduler", f"schedule/default/{name}")
    role = b.add(iam.Role(
        "BatchTransformScheduleRole",
        Description="EventBridge Scheduler: start the batch transform state machine",
        AssumeRolePolicyDocument=policies.trusted_by(
            "scheduler.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="start-batch-transform",
            PolicyDocument=policies.document(
                # AWS: "Set up the execution role" (EventBridge Scheduler User Guide): the
                # target's action, here starting this state machine.
                Statement(Effect=Allow, Action=[awacs.states.StartExecution],
                          Resource=[Ref(machine)]),
                # The machine is encrypted with the data key: StartExecution encrypts the
                # execution's input with it in the caller's name, in the machine's encryption
                # context. AWS: "Data at rest encryption in Step Functions" (Step Functions
                # Developer Guide; StartExecution: kms:GenerateDataKey and kms:Decrypt).
                key_use_by_machine(key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey],
                                   machine_arn),
                # AWS: "Encryption at rest in EventBridge Scheduler" (kms:Decrypt in the
                # schedule-arn context): the schedule's input is encrypted with the data
                # key; the scheduler decrypts it with this role, for this schedule only.
                Statement(
                    Effect=Allow,
                    Action=[awacs.kms.Decrypt],
                    Resource=[key],
                    Condition=Condition(StringEquals(
                        "kms:EncryptionContext:aws:scheduler:schedule-arn", schedule_arn)),
                ),
            ),
        )],
    ))
    return b.add(scheduler.Schedule(
        "BatchTransformSchedule",
        Name=Sub(name),
        Description="Starts the batch transform state machine",
        ScheduleExpression=b.setting(batch, "schedule"),
        State=b.setting(batch, "schedule_state"),
        FlexibleTimeWindow=scheduler.FlexibleTimeWindow(Mode="OFF"),
        KmsKeyArn=key,
        Target=scheduler.Target(
            Arn=Ref(machine),
            RoleArn=GetAtt(role, "Arn"),
            Input="{}",
            RetryPolicy=scheduler.RetryPolicy(MaximumRetryAttempts=SCHEDULE_RETRY_ATTEMPTS),
        ),
    ))
