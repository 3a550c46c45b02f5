"""The lidar subset of the Waymo Open Dataset `Frame` message, built at import time.

Field numbers and types are those of Waymo's `dataset.proto` (proto2), so real Waymo
tfrecords parse with these classes: fields not declared here (cameras, labels, ...) are
skipped as unknown fields. When the official `waymo_open_dataset` package is importable,
its generated classes are used instead (same wire format).
"""
from google.protobuf import descriptor_pb2, message_factory

LASER_TOP = 1  # LaserName.TOP

_PACKAGE = 'waymo.open_dataset'
_LASER_NAMES = ('UNKNOWN', 'TOP', 'FRONT', 'SIDE_LEFT', 'SIDE_RIGHT', 'REAR')
_LASER_NAME = 'LaserName.Name'

# message -> (field, number, label, type); a type that is not a scalar names a message or the enum.
_MESSAGES = (
    ('MatrixShape', (('dims', 1, 'repeated', 'int32'),)),
    ('MatrixFloat', (('data', 1, 'packed', 'float'), ('shape', 2, 'optional', 'MatrixShape'))),
    ('Transform', (('transform', 1, 'repeated', 'double'),)),
    ('LaserCalibration', (
        ('name', 1, 'optional', _LASER_NAME),
        ('beam_inclinations', 2, 'repeated', 'double'),
        ('beam_inclination_min', 3, 'optional', 'double'),
        ('beam_inclination_max', 4, 'optional', 'double'),
        ('extrinsic', 5, 'optional', 'Transform'),
    )),
    ('Context', (
        ('name', 1, 'optional', 'string'),
        ('laser_calibrations', 3, 'repeated', 'LaserCalibration'),
    )),
    ('RangeImage', (
        ('range_image_compressed', 2, 'optional', 'bytes'),
        ('range_image_pose_compressed', 4, 'optional', 'bytes'),
    )),
    ('Laser', (('name', 1, 'optional', _LASER_NAME), ('ri_return1', 2, 'optional', 'RangeImage'),
               ('ri_return2', 3, 'optional', 'RangeImage'))),
    ('Frame', (
        ('context', 1, 'optional', 'Context'),
        ('timestamp_micros', 2, 'optional', 'int64'),
        ('pose', 3, 'optional', 'Transform'),
        ('lasers', 5, 'repeated', 'Laser'),
    )),
)


def _file_descriptor():
    fdp = descriptor_pb2.FieldDescriptorProto
    scalars = {
        'int32': fdp.TYPE_INT32, 'int64': fdp.TYPE_INT64, 'float': fdp.TYPE_FLOAT,
        'double': fdp.TYPE_DOUBLE, 'string': fdp.TYPE_STRING, 'bytes': fdp.TYPE_BYTES,
    }
    labels = {'optional': fdp.LABEL_OPTIONAL, 'repeated': fdp.LABEL_REPEATED, 'packed': fdp.LABEL_REPEATED}
    proto = descriptor_pb2.FileDescriptorProto(
        name='also_pcdet/waymo_frame_subset.proto', package=_PACKAGE, syntax='proto2')
    enum = proto.message_type.add(name='LaserName').enum_type.add(name='Name')
    for number, name in enumerate(_LASER_NAMES):
        enum.value.add(name=name, number=number)
    for message_name, fields in _MESSAGES:
        message = proto.message_type.add(name=message_name)
        for name, number, label, kind in fields:
            field = message.field.add(name=name, number=number, label=labels[label])
            if kind in scalars:
                field.type = scalars[kind]
            else:
                field.type = fdp.TYPE_ENUM if kind == _LASER_NAME else fdp.TYPE_MESSAGE
                field.type_name = f'.{_PACKAGE}.{kind}'
            if label == 'packed':
                field.options.packed = True
    return proto


def _build_classes():
    classes = message_factory.GetMessages([_file_descriptor()])  # in a private descriptor pool
    return {name: classes[f'{_PACKAGE}.{name}'] for name, _ in _MESSAGES}


try:
    from waymo_open_dataset import dataset_pb2 as _official
except Exception:  # not installed, or generated for an incompatible protobuf runtime
    _official = None

if _official is not None:
    _CLASSES = {name: getattr(_official, name) for name, _ in _MESSAGES}
else:
    _CLASSES = _build_classes()

MatrixShape = _CLASSES['MatrixShape']
MatrixFloat = _CLASSES['MatrixFloat']
Transform = _CLASSES['Transform']
LaserCalibration = _CLASSES['LaserCalibration']
Context = _CLASSES['Context']
RangeImage = _CLASSES['RangeImage']
Laser = _CLASSES['Laser']
Frame = _CLASSES['Frame']
USING_OFFICIAL_PROTOS = _official is not None
